"""``temporec serve --workers N`` as real processes on loopback: the workers share one
port and all answer, health, summed metrics, a shared SQLite store, SIGHUP and
Admin.ReloadModels reaching every worker, the drain on SIGTERM, a dying worker stopping
the server; and two replicas behind the Python client's round-robin balancing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from conftest import save_video_model, scrape
from temporec.triton.local_server import free_port
from temporec.v1 import admin_pb2, admin_pb2_grpc
from temporec_client import TemporecClient, TrackedEvent

ADMIN_TOKEN = "workers-test-admin"
#: A fresh TCP connection per client: the kernel spreads connections, not calls, over workers.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
ACCESS_PID = re.compile(r"temporec\.access pid (\d+) ")


@dataclass
class Running:
    process: subprocess.Popen
    target: str
    metrics_port: int

    def samples(self) -> dict:
        return scrape(self.metrics_port)

    def stderr(self) -> str:
        """The server's log: read once it has exited."""
        return self.process.stderr.read()


@contextmanager
def temporec_serve(models: Path, *flags: str) -> Iterator[Running]:
    """``temporec serve`` on a free loopback port, until the block ends (then killed if it
    still runs); the ready line must come first."""
    metrics_port = free_port()
    command = [sys.executable, "-m", "temporec", "serve", "--host", "127.0.0.1", "--port", "0", "--models", str(models)]
    command += ["--device", "cpu", "--metrics-port", str(metrics_port), "--no-warm-encoders", *flags]
    env = {**os.environ, "TEMPOREC_CONFIG": "", "TEMPOREC_ADMIN_TOKENS": ADMIN_TOKEN}
    env.pop("TEMPOREC_PLUGINS", None)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(240, process.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    try:
        line = process.stdout.readline()
        ready = re.fullmatch(r"temporec serving on (127\.0\.0\.1:\d+) \(1 models\)\n", line)
        assert ready, f"first line {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        yield Running(process, ready[1], metrics_port)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        process.wait()


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a reload runs in the background; metrics come after the answer)."""
    for _ in range(600):
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"never: {what}")


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def recommends(samples: dict) -> float:
    return value(samples, "temporec_requests_total", method="Recommend", domain="video", head="lstm", code="OK")


def models_by_worker(samples: dict) -> dict[str, float]:
    """``temporec_models_loaded`` of each live worker, by pid."""
    return {dict(labels)["pid"]: v for (name, labels), v in samples.items() if name == "temporec_models_loaded"}


def versions_on_new_connections(target: str, calls: int) -> set[str]:
    versions = set()
    for _ in range(calls):
        with TemporecClient(target, options=OWN_CONNECTION, timeout=30) as client:
            versions.add(client.recommend("video", history=["m1", "m2"]).model_version)
    return versions


def test_two_workers_share_the_port_metrics_store_reloads_and_the_drain(tmp_path):
    save_video_model(tmp_path / "models", "1")
    store = f"sqlite:///{tmp_path / 'history.db'}"
    with temporec_serve(tmp_path / "models", "--workers", "2", "--store", store) as server:
        with TemporecClient(server.target) as client:
            assert client.health() == "SERVING"
        samples = server.samples()
        assert sorted(models_by_worker(samples).values()) == [1, 1]  # two live workers, a model each
        assert not any(name.startswith("process_") for name, _ in samples)  # not in multiprocess mode

        # Calls on 40 connections: the kernel hashes each to a worker; the metrics sum them.
        calls = 40
        for user in range(calls):
            with TemporecClient(server.target, options=OWN_CONNECTION, timeout=30) as client:
                assert client.recommend("video", history=["m1", "m2"]).model_version == "1"
                event = TrackedEvent("shared-user", f"e{user}", f"m{user % 12}", "watch", 1_700_000_000 + user)
                assert client.track([event]).stored == 1
        until(lambda: recommends(server.samples()) == calls, f"{calls} Recommend calls counted")
        with TemporecClient(server.target, timeout=30) as client:  # one SQLite file behind both workers
            assert len(client.get_history("shared-user")) == calls

        # SIGHUP to the supervisor reloads every worker: each counts its own reload.
        save_video_model(tmp_path / "models", "2")
        server.process.send_signal(signal.SIGHUP)
        reloads = lambda: value(server.samples(), "temporec_reloads_total", result="ok")  # noqa: E731
        until(lambda: reloads() == 2, "both workers reloaded on SIGHUP")
        assert versions_on_new_connections(server.target, 20) == {"2"}

        # Admin.ReloadModels reaches one worker, which has the supervisor reload the other.
        save_video_model(tmp_path / "models", "3")
        with grpc.insecure_channel(server.target) as channel:
            answer = admin_pb2_grpc.AdminStub(channel).ReloadModels(
                admin_pb2.ReloadModelsRequest(), metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")], timeout=60
            )
        assert answer.reloaded and [m.version for m in answer.models] == ["3"]
        until(lambda: reloads() == 4, "the other worker reloaded after Admin.ReloadModels")
        assert versions_on_new_connections(server.target, 20) == {"3"}

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=120) == 0
        log = server.stderr()
    assert len(set(ACCESS_PID.findall(log))) == 2, "calls landed on one worker only"
    assert "worker 1 was asked to reload" in log or "worker 0 was asked to reload" in log


def test_a_worker_that_dies_stops_the_whole_server(tmp_path):
    save_video_model(tmp_path / "models", "1")
    with temporec_serve(tmp_path / "models", "--workers", "2") as server:
        victim = int(next(iter(models_by_worker(server.samples()))))
        os.kill(victim, signal.SIGKILL)
        assert server.process.wait(timeout=120) == 1  # the other worker drained, nothing restarted
        log = server.stderr()
    assert f"(pid {victim}) exited with status -9: stopping the server" in log


def test_a_worker_that_does_not_stop_is_killed_after_the_grace_period(tmp_path):
    save_video_model(tmp_path / "models", "1")
    with temporec_serve(tmp_path / "models", "--workers", "2", "--grace-seconds", "1") as server:
        stuck, _ = (int(pid) for pid in models_by_worker(server.samples()))
        os.kill(stuck, signal.SIGSTOP)  # as a hung plugin's thread would, it never ends by itself
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=120) == 1
        log = server.stderr()
    assert f"(pid {stuck}) did not stop in time: killing it" in log
    assert not running(stuck)


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def test_workers_drain_when_their_supervisor_is_killed(tmp_path):
    save_video_model(tmp_path / "models", "1")
    with temporec_serve(tmp_path / "models", "--workers", "2") as server:
        workers = [int(pid) for pid in models_by_worker(server.samples())]
        assert len(workers) == 2 and all(running(pid) for pid in workers)
        server.process.kill()
        server.process.wait()
        until(lambda: not any(running(pid) for pid in workers), "the orphaned workers stopped")


def test_two_replicas_behind_the_clients_round_robin(tmp_path):
    save_video_model(tmp_path / "models", "1")
    with temporec_serve(tmp_path / "models") as first, temporec_serve(tmp_path / "models") as second:
        ports = ",".join(server.target for server in (first, second))
        with TemporecClient(f"ipv4:{ports}", round_robin=True, timeout=30) as client:
            assert client.health() == "SERVING"
            for _ in range(20):
                client.recommend("video", history=["m1", "m2"])
        until(lambda: recommends(first.samples()) + recommends(second.samples()) == 20, "20 calls counted")
        counts = [recommends(first.samples()), recommends(second.samples())]
        assert min(counts) >= 1, f"calls per replica: {counts}"
        with TemporecClient(f"ipv4:{ports}", timeout=30) as client:  # without: the first address takes all
            for _ in range(10):
                client.recommend("video", history=["m1", "m2"])
        until(lambda: sum([recommends(first.samples()), recommends(second.samples())]) == 30, "30 calls counted")
        after = [recommends(first.samples()), recommends(second.samples())]
        assert sorted(a - c for a, c in zip(after, counts)) == [0, 10]

        # Workers never share a port that another server holds.
        port = first.target.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "temporec", "serve", "--host", "127.0.0.1", "--port", port, "--workers", "2"]
        refused = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env={**os.environ, "TEMPOREC_CONFIG": ""}
        )
        assert refused.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in refused.stderr
