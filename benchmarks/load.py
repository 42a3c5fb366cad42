"""Load and soak test of a real server on loopback (issue 7, section 5).

    .venv/bin/python benchmarks/load.py             # about 3 minutes of load: writes the
                                                    # "load" section of benchmarks/RESULTS.md
    .venv/bin/python benchmarks/load.py --quick     # a smoke test (seconds of load): prints it
    .venv/bin/python benchmarks/load.py --seconds 1800   # the 30-minute memory soak

Trains a real ``video`` model (``lstm`` head, item texts embedded by the ``local`` MiniLM
encoder) on the first ``--users`` users of MovieLens-1M (``../shared/data/ml-1m``; without
it, on the small MovieLens-format set of ``scripts/serve_test_model.py``), starts
``temporec serve`` on 127.0.0.1 in its own process, and runs ``--clients`` concurrent
clients (grpc.aio, over ``--channels`` channels). The loop is bounded: it stops by itself
after ``--seconds`` or ``--requests`` requests, whichever comes first.

Requests are the data's real histories (the domain's own reading of it: a random prefix,
at most ``--history`` events), with some cold starts (no history) and some events whose
item is known only by its text (the server embeds it with the encoder). Every request is
valid, so every error counts as unexpected.

Then (``--paced``, a share of the throughput just measured, the peak; 0 skips it) requests
arrive open loop, as a Poisson process at that rate for ``--paced-seconds``, each latency
counted from its arrival: the tail at a load the server can carry.

Reported: requests, errors by status code, throughput, the latency percentiles the clients
saw (closed loop and paced), the server's mean time per stage (its Prometheus metrics), and the server process's
resident memory after a warm-up, during and after the load (/proc/<pid>/status; psutil
where there is no /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
import numpy as np

from results_file import (
    RESULTS_SECTIONS,
    RESULTS_TITLE,
    machine,
    machine_line,
    write_section,
)
from temporec.triton.local_server import free_port

ROOT = Path(__file__).resolve().parents[1]
#: The machine as the report describes it: not this process's torch threads or device,
#: which say nothing of the server's.
SERVER_MACHINE_KEYS = ("cpu", "cores", "memory", "torch", "python")
ML1M = ROOT.parent / "shared" / "data" / "ml-1m"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
COLD_SHARE, TEXT_SHARE = 0.05, 0.05  # of the requests: cold starts, and with an item known by text only
REQUEST_TIMEOUT = 30.0  # seconds; a request that takes longer counts as DEADLINE_EXCEEDED
MEMORY_NOISE = 0.02  # RSS growth below this share of the warm RSS counts as flat (issue 17's goal)
TAIL_GOAL = 3.0  # paced at a share of the peak, p99 at most this many times p50 (issue 17)
MEMORY_INTERVAL = 15.0  # seconds between samples of the server's memory during the load
#: A channel option: its own TCP connection (grpc otherwise shares one between a process's
#: channels to one target), so that --workers spreads the channels over its processes.
OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)


@dataclass
class Settings:
    users: int = 1000
    epochs: int = 2
    dim: int = 64
    max_len: int = 50
    clients: int = 32
    channels: int = 4
    seconds: float = 180.0
    requests: int = 1_000_000
    warmup: int = 5000  # until the server's memory pools have grown to its working set
    history: int = 50
    k: int = 10
    paced: float = 0.7  # then requests arrive at this share of the load's throughput (0: not run)
    paced_seconds: float = 120.0
    workers: int = 1  # temporec serve --workers: server processes on the port


QUICK = Settings(
    users=200, epochs=1, dim=32, max_len=20, clients=8, channels=2, seconds=10, requests=2000, warmup=200,
    paced_seconds=5,
)  # fmt: skip


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, every request
    codes: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.codes.values())

    @property
    def errors(self) -> int:
        return self.requests - self.codes["OK"]

    async def call(self, stub, request, since: float) -> None:
        """Send one Recommend; count its code and its latency from ``since`` (perf_counter)."""
        try:
            await stub.Recommend(request, timeout=REQUEST_TIMEOUT)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        self.latencies.append(time.perf_counter() - since)
        self.codes[code] += 1


# -- the model and the server -------------------------------------------------------------


def write_data(directory: Path, users: int) -> str:
    """The first ``users`` users of ML-1M (or the synthetic set); returns a description."""
    directory.mkdir(parents=True)
    if ML1M.is_dir():
        lines = (ML1M / "ml-1m.user_sequences.tsv").read_text().splitlines()[:users]
        (directory / "ml-1m.user_sequences.tsv").write_text("\n".join(lines) + "\n")
        os.symlink(ML1M / "movies.dat", directory / "movies.dat")
        return f"the first {len(lines)} users of MovieLens-1M ({ML1M})"
    sys.path.insert(0, str(ROOT / "scripts"))
    from serve_test_model import write_movielens

    write_movielens(directory)
    return f"the synthetic MovieLens-format set of scripts/serve_test_model.py ({ML1M} is absent)"


def train(data: Path, models: Path, settings: Settings, head: str = "lstm") -> float:
    """``temporec train`` a head of the video domain; returns the minutes it took."""
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "temporec",
        "train",
        "--domain",
        "video",
        "--head",
        head,
        "--data",
        str(data),
        "--out",
        str(models),
        "--epochs",
        str(settings.epochs),
        "--dim",
        str(settings.dim),
        "--max-len",
        str(settings.max_len),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    subprocess.run(command, check=True, stdout=sys.stderr)
    return (time.monotonic() - started) / 60


class Server:
    """``temporec serve`` in its own process, on a free loopback port; ``options``: more of
    its flags (a config file, a store), ``metrics_port``: where it serves Prometheus."""

    def __init__(self, models: Path, *options: str, metrics_port: int | None = None):
        command = [sys.executable, "-m", "temporec", "serve", "--host", "127.0.0.1", "--port", "0"]
        command += ["--models", str(models), "--device", "cpu", "--grace-seconds", "5", "--log-level", "warning"]
        command += [*options, *(["--metrics-port", str(metrics_port)] if metrics_port else [])]
        env = {k: v for k, v in os.environ.items() if k not in ("TEMPOREC_PLUGINS", "TEMPOREC_CONFIG")}
        self.metrics_port = metrics_port
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        ready = re.search(r"serving on (\S+) \((\d+) models\)", line)
        if not ready:
            self.stop()
            raise SystemExit(f"the server did not start (first line {line!r}); see its log above")
        self.target = ready[1]

    def processes(self) -> list:
        """The server's processes (psutil): ``temporec serve`` and, with ``--workers``, its
        workers and their helpers."""
        import psutil

        server = psutil.Process(self.process.pid)
        return [server, *server.children(recursive=True)]

    def memory_mib(self) -> tuple[float, float]:
        """The server's resident memory now and its peak, in MiB, summed over its processes:
        peaks from /proc on Linux, else psutil's (which tells no peak: the current value
        stands for it)."""
        now = peak = 0.0
        for process in self.processes():
            rss = process.memory_info().rss / 2**20
            status = Path(f"/proc/{process.pid}/status")
            kib = dict(re.findall(r"^(VmHWM):\s+(\d+) kB$", status.read_text(), re.M)) if status.is_file() else {}
            now, peak = now + rss, peak + (int(kib["VmHWM"]) / 1024 if kib else rss)
        return now, peak

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (user + system, all its threads and processes)."""
        return sum(sum(process.cpu_times()[:2]) for process in self.processes())

    def stage_means_ms(self) -> dict[str, float]:
        """Mean milliseconds per Recommend stage, from the server's Prometheus metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as response:
            text = response.read().decode()
        sums, counts = collections.Counter(), collections.Counter()
        for kind, stage, number in re.findall(
            r'^temporec_stage_seconds_(sum|count)\{[^}]*stage="(\w+)"[^}]*\} (\S+)$', text, re.M
        ):
            (sums if kind == "sum" else counts)[stage] += float(number)
        return {stage: 1000 * sums[stage] / counts[stage] for stage in counts if counts[stage]}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- the load -------------------------------------------------------------------------------


def build_requests(data: Path, settings: Settings, count: int = 4000, seed: int = 0) -> list:
    """``count`` valid Recommend requests from the data's histories, as the domain reads it."""
    from temporec.data import k_core
    from temporec.v1 import recommender_pb2 as pb
    from temporec_plugins.domains.video import VideoDomain

    dataset = k_core(VideoDomain().load_dataset(str(data)), VideoDomain.min_interactions)  # as the model was trained
    histories = [events for events in dataset.sequences.values() if events]
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        events = rng.choice(histories)
        end = rng.randint(1, len(events))
        window = events[max(0, end - settings.history) : end]
        history = [pb.Event(item_id=e.item_id, action=e.action, timestamp_ms=round(e.timestamp * 1000)) for e in window]
        draw = rng.random()
        if draw < COLD_SHARE:
            history = []
        elif draw < COLD_SHARE + TEXT_SHARE:
            title = dataset.catalog.texts[rng.randrange(len(dataset.catalog))]
            history.append(pb.Event(text=f"a film like {title}", timestamp_ms=history[-1].timestamp_ms))
        requests.append(pb.RecommendRequest(domain="video", history=history, k=settings.k))
    return requests


async def run_load(
    target: str,
    requests: list,
    settings: Settings,
    seconds: float,
    limit: int,
    watch: Callable[[], None] = lambda: None,
    own_connections: bool = False,
) -> Tally:
    """``settings.clients`` clients send ``requests`` (in random order) until ``seconds``
    have passed or ``limit`` requests were sent; ``watch`` is called every
    ``MEMORY_INTERVAL`` seconds meanwhile. ``own_connections``: a TCP connection per channel."""
    from temporec.v1 import recommender_pb2_grpc

    tally = Tally()
    options = [OWN_CONNECTION] if own_connections else []
    channels = [grpc.aio.insecure_channel(target, options) for _ in range(settings.channels)]
    stubs = [recommender_pb2_grpc.RecommenderStub(channel) for channel in channels]
    budget = limit
    started = time.monotonic()
    deadline = started + seconds

    async def client(number: int) -> None:
        nonlocal budget
        rng = random.Random(number)
        stub = stubs[number % len(stubs)]
        while budget > 0 and time.monotonic() < deadline:
            budget -= 1
            await tally.call(stub, rng.choice(requests), time.perf_counter())

    async def watcher() -> None:
        while True:
            await asyncio.sleep(MEMORY_INTERVAL)
            watch()

    watching = asyncio.create_task(watcher())
    try:
        await asyncio.gather(*(client(n) for n in range(settings.clients)))
    finally:
        watching.cancel()
        for channel in channels:
            await channel.close()
    tally.seconds = time.monotonic() - started
    return tally


async def run_paced(
    target: str, requests: list, rate: float, seconds: float, channels: int, seed: int = 0, own_connections=False
) -> Tally:
    """Open loop: requests arrive as a Poisson process of ``rate`` a second for ``seconds``,
    each sent on arrival whatever is still in flight, its latency counted from its arrival,
    so that a server falling behind shows in the tail (closed-loop clients would wait for it
    and hide it: coordinated omission). ``own_connections``: a TCP connection per channel."""
    from temporec.v1 import recommender_pb2_grpc

    tally, rng, in_flight = Tally(), random.Random(seed), set()
    options = [OWN_CONNECTION] if own_connections else []
    opened = [grpc.aio.insecure_channel(target, options) for _ in range(channels)]
    stubs = [recommender_pb2_grpc.RecommenderStub(channel) for channel in opened]

    started = arrival = time.perf_counter()
    try:
        for number in itertools.count():
            arrival += rng.expovariate(rate)
            if arrival - started > seconds:
                break
            await asyncio.sleep(max(0.0, arrival - time.perf_counter()))
            task = asyncio.create_task(tally.call(stubs[number % len(stubs)], rng.choice(requests), arrival))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    finally:
        for channel in opened:
            await channel.close()
    tally.seconds = time.perf_counter() - started
    return tally


# -- the report -----------------------------------------------------------------------------


def latency_row(tally: Tally) -> str:
    """requests, OK, errors, seconds, requests/s and the latency percentiles, as table cells."""
    ms = np.array(tally.latencies) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]) if len(ms) else (0, 0, 0)
    rate = tally.requests / max(tally.seconds, 1e-9)
    return (
        f"| {tally.requests} | {tally.codes['OK']} | {tally.errors} | {tally.seconds:.1f} | {rate:.1f} "
        f"| {p50:.1f} | {p90:.1f} | {p99:.1f} | {ms.max() if len(ms) else 0:.1f} |"
    )


def paced_text(settings: Settings, load: Tally, paced: Tally | None) -> str:
    """The paced run's paragraph and row, and its tail goal."""
    if paced is None:
        return ""
    offered = settings.paced * load.requests / max(load.seconds, 1e-9)
    p50, p99 = np.percentile(np.array(paced.latencies) * 1000, [50, 99]) if paced.latencies else (0.0, 0.0)
    tail = p99 / p50 if p50 else float("inf")
    return f"""
Paced: then requests arrived at {settings.paced:.0%} of that throughput ({offered:.1f} a second, Poisson
arrivals, each sent on arrival over {settings.channels} channels) for {settings.paced_seconds:g} s, each latency
counted from its arrival (no coordinated omission).

| requests | OK | errors | seconds | requests/s | p50 ms | p90 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{latency_row(paced)}

p99 / p50 = {tail:.2f}. Goal, p99 at most {TAIL_GOAL:g}x p50 at {settings.paced:.0%} of the peak: {"met" if tail <= TAIL_GOAL else "not met"}.
"""


def served_by(workers: int) -> str:
    if workers == 1:
        return "one server process"
    return f"`temporec serve --workers {workers}` (memory and CPU summed over its processes; a connection per channel)"


def report(
    settings: Settings,
    data: str,
    minutes: float,
    warm: Tally,
    load: Tally,
    memory: list[float],
    peak: float,
    stages: dict,
    paced: Tally | None = None,
) -> str:
    """The markdown section. ``memory``: the server's RSS (MiB) after the warm-up, every
    ``MEMORY_INTERVAL`` seconds of the load, and after it."""
    before, middle, after = memory[0], memory[len(memory) // 2], memory[-1]
    growth = (after - before) / before
    unexpected = load.errors + warm.errors + (paced.errors if paced else 0)
    codes = load.codes + (paced.codes if paced else collections.Counter())
    errors = ", ".join(f"{code} {n}" for code, n in sorted(codes.items()) if code != "OK") or "none"
    stage_line = ", ".join(f"{stage} {value:.2f}" for stage, value in stages.items()) or "(none recorded)"
    command = " ".join(["benchmarks/load.py", *map(shlex.quote, sys.argv[1:])])
    return f"""## Load (loopback)

Written by `benchmarks/load.py` on {time.strftime("%Y-%m-%d")}.

Command: `.venv/bin/python {command}`

Machine: {machine_line(machine(), SERVER_MACHINE_KEYS)}. The server, the load generator and other work share these cores, so the
numbers are a floor for a dedicated machine: the clients' own CPU time is in every latency.

Model: `video` / `lstm`, dim {settings.dim}, {settings.max_len} events of history, {settings.epochs} epoch(s), trained
on {data} in {minutes:.1f} min; item texts embedded by the `local` encoder (all-MiniLM-L6-v2). Served by
{served_by(settings.workers)}.

Load: {settings.clients} concurrent clients over {settings.channels} grpc.aio channels, each sending its next request
when the last is answered, for {settings.seconds:g} s or {settings.requests} requests, whichever comes first,
after {warm.requests} warm-up requests. Requests: real histories (a random prefix, at most {settings.history}
events), {COLD_SHARE:.0%} cold starts, {TEXT_SHARE:.0%} with an item known only by its text; k = {settings.k}.

| requests | OK | errors | seconds | requests/s | p50 ms | p90 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{latency_row(load)}
{paced_text(settings, load, paced)}
Errors by code (both runs): {errors}. Goal, no unexpected error: {"met" if unexpected == 0 else f"not met ({unexpected})"}.

Server memory (resident): {before:.0f} MiB after the warm-up, {after:.0f} MiB after the load
({after - before:+.1f} MiB, {growth:+.1%}; in its second half {after - middle:+.1f} MiB); peak {peak:.0f} MiB.
Every {MEMORY_INTERVAL:g} s of the load (MiB): {", ".join(f"{m:.0f}" for m in memory)}. Goal, no growth
beyond {MEMORY_NOISE:.0%} of the RSS after the warm-up over the load: {"met" if growth < MEMORY_NOISE else "not met"}.

Server-side mean per Recommend stage (ms, from `temporec_stage_seconds`, warm-up included): {stage_line}.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test: small model, seconds of load, printed only")
    defaults = Settings()
    for name, value in vars(defaults).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(value), help=f"default {value} (--quick: {getattr(QUICK, name)})"
        )
    parser.add_argument(
        "--results", type=Path, help=f"the results file (default {RESULTS.relative_to(ROOT)}; --quick: none)"
    )
    args = parser.parse_args()
    base = QUICK if args.quick else defaults
    settings = dataclasses.replace(
        base, **{name: getattr(args, name) for name in vars(base) if getattr(args, name) is not None}
    )
    results = args.results or (None if args.quick else RESULTS)

    workdir = Path(tempfile.mkdtemp(prefix="temporec-load-"))
    try:
        data = workdir / "data"
        described = write_data(data, settings.users)
        minutes = train(data, workdir / "models", settings)
        requests = build_requests(data, settings)
        workers = ["--workers", str(settings.workers)] if settings.workers > 1 else []
        spread = settings.workers > 1  # each channel its own connection, so that all workers serve
        server = Server(workdir / "models", *workers, metrics_port=free_port())
        try:
            print(f"serving on {server.target}; warming up", file=sys.stderr)
            warm = asyncio.run(
                run_load(server.target, requests, settings, seconds=120, limit=settings.warmup, own_connections=spread)
            )
            samples = [server.memory_mib()[0]]
            print(f"loading for up to {settings.seconds:g} s / {settings.requests} requests", file=sys.stderr)
            watch = lambda: samples.append(server.memory_mib()[0])  # noqa: E731
            load = asyncio.run(
                run_load(server.target, requests, settings, settings.seconds, settings.requests, watch, spread)
            )
            after, peak = server.memory_mib()
            samples.append(after)
            paced = None
            if settings.paced > 0:
                rate = settings.paced * load.requests / max(load.seconds, 1e-9)
                print(f"paced: {rate:.0f} requests/s for {settings.paced_seconds:g} s", file=sys.stderr)
                paced = asyncio.run(
                    run_paced(server.target, requests, rate, settings.paced_seconds, settings.channels, 0, spread)
                )
            stages = server.stage_means_ms()
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    body = report(settings, described, minutes, warm, load, samples, peak, stages, paced)
    print(body)
    if results:
        write_section(results, "load", body, RESULTS_TITLE, order=RESULTS_SECTIONS)
        print(f"wrote the load section of {results}", file=sys.stderr)
    return 0 if load.errors + warm.errors + (paced.errors if paced else 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
