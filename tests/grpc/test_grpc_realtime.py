"""Real time through the API (docs/realtime.md): Track, Recommend by user id, GetHistory and
ForgetUser against real gRPC servers on loopback, a real SQLite file and a real redis-server
(the Redis cases skip, with the reason, where redis-server is not installed)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from temporec_client import Event, TemporecClient, TemporecError, TrackedEvent

T0 = 1_700_000_000.0
TOKEN = "realtime-secret-token-4f1c"


@pytest.fixture(scope="module")
def registry(store_registry):
    return store_registry


@pytest.fixture
def serve(start_grpc_server, registry, tiny_models_dir):
    """``serve(store_url, **settings)``: a context manager yielding a started ServerThread."""
    return lambda url, **fields: start_grpc_server(registry, tiny_models_dir, store=url, **fields)


def events(user: str, items: list[str], start: int = 0, prefix: str = "e") -> list[TrackedEvent]:
    return [
        TrackedEvent(user, f"{prefix}{start + t}", item, "view", T0 + 60 * (start + t)) for t, item in enumerate(items)
    ]


def same_answer(a, b) -> None:
    assert a.item_ids == b.item_ids
    assert [i.score for i in a.items] == pytest.approx([i.score for i in b.items], rel=1e-5, abs=1e-6)


def code_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(TemporecError) as raised:
        call(*args, **kwargs)
    return raised.value.code, raised.value.details


def test_recommend_by_user_id_answers_as_the_stored_history_sent_explicitly(serve, store_url):
    with serve(store_url) as server, TemporecClient(server.target) as client:
        tracked = events("u1", ["v3", "v7", "v1", "v12"])
        assert client.track([tracked[2], tracked[0], tracked[3]]).stored == 3
        assert client.track([tracked[1]]).stored == 1  # late: it happened second
        assert [e.event_id for e in client.get_history("u1")] == ["e0", "e1", "e2", "e3"]
        explicit = [Event(e.item_id, e.action, e.timestamp) for e in tracked]

        by_user = client.recommend("tiny", user_id="u1", k=5)
        assert by_user.history_source == "store"
        same_answer(by_user, client.recommend("tiny", history=explicit, k=5))
        assert client.recommend("tiny", history=explicit, k=5).history_source == "request"

        more = Event("v5", "like", T0 + 3600)
        both = client.recommend("tiny", user_id="u1", history=[more], k=5)
        assert both.history_source == "store+request"
        same_answer(both, client.recommend("tiny", history=[*explicit, more], k=5))
        assert client.recommend("tiny", user_id="nobody", k=3).cold_start
        code, details = code_of(client.recommend, "tiny", user_id="u1", history=[Event("v5", "view", T0 - 60)], k=5)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("history[0].timestamp: earlier than")


def test_a_retried_event_id_is_stored_once(serve, store_url):
    with serve(store_url) as server, TemporecClient(server.target) as client:
        batch = events("u", ["v1", "v2", "v3"])
        assert (client.track(batch).stored, client.track(batch).duplicates) == (3, 3)
        repeated = client.track([*events("u", ["v4"], 3), *events("u", ["v4"], 3)])
        assert (repeated.stored, repeated.duplicates) == (1, 1)
        same_time = [TrackedEvent("t", f"s{n}", f"v{n}", "view", T0) for n in range(4)]
        client.track([*same_time, same_time[0]])
        assert [e.event_id for e in client.get_history("t")] == ["s0", "s1", "s2", "s3"]  # ties: arrival order
        streamed = client.track_stream([batch, events("u", ["v5", "v6"], 4)])
        assert (streamed.stored, streamed.duplicates) == (2, 3)
        assert [e.item_id for e in client.get_history("u")] == ["v1", "v2", "v3", "v4", "v5", "v6"]
        assert [e.item_id for e in client.get_history("u", limit=2)] == ["v5", "v6"]


def test_the_cap_keeps_each_users_newest_events(serve, store_url):
    with serve(store_url, store_max_events=3) as server, TemporecClient(server.target) as client:
        client.track(events("u", ["v1", "v2", "v3", "v4", "v5"]))
        assert [e.item_id for e in client.get_history("u")] == ["v3", "v4", "v5"]


def test_track_errors_name_the_field_and_the_index(serve, tmp_path):
    with serve(f"sqlite://{tmp_path}/h.db") as server, TemporecClient(server.target) as client:
        bad = [*events("u", ["v1"]), TrackedEvent("u", "", "v2")]
        assert code_of(client.track, bad) == (grpc.StatusCode.INVALID_ARGUMENT, "events[1].event_id: required")
        code, details = code_of(client.track, [TrackedEvent("u", "e", "")])
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("events[0]: an event needs")
        assert code_of(client.track, [])[0] is grpc.StatusCode.INVALID_ARGUMENT
        assert client.get_history("u") == []  # a refused call stores nothing
        assert code_of(client.get_history, "")[1] == "user_id: required"


def test_without_a_store_the_calls_that_need_one_name_the_setting(grpc_server):
    with TemporecClient(grpc_server.target) as client:
        for call, args in (
            (client.track, [events("u", ["v1"])]),
            (client.get_history, ["u"]),
            (client.forget_user, ["u"]),
            (lambda: client.recommend("tiny", user_id="u"), []),
        ):
            code, details = code_of(call, *args)
            assert code is grpc.StatusCode.FAILED_PRECONDITION and "`store` setting" in details
        # a history of its own needs no store, user id or not
        assert client.recommend("tiny", user_id="u", history=["v1"]).history_source == "request"


def test_forget_user_leaves_nothing_of_the_user_in_sqlite(serve, tmp_path):
    path = tmp_path / "h.db"
    with serve(f"sqlite://{path}") as server, TemporecClient(server.target) as client:
        client.track(events("forget-me", ["v1", "v2", "v3"]) + events("keep-me", ["v4"]))
        assert client.forget_user("forget-me") == 3
        assert client.get_history("forget-me") == [] and len(client.get_history("keep-me")) == 1
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM events").fetchall()
    assert rows and not [row for row in rows if "forget-me" in map(str, row)]
    assert b"forget-me" not in path.read_bytes() + wal(path)


def test_forget_user_leaves_no_redis_key_or_value_of_the_user(serve, redis_server):
    with serve(redis_server.url) as server, TemporecClient(server.target) as client:
        client.track(events("forget-me", ["v1", "v2"]) + events("keep-me", ["v4"]))
        assert client.forget_user("forget-me") == 2
    assert "forget-me" not in redis_dump(redis_server) and "keep-me" in redis_dump(redis_server)


def test_track_and_forget_user_need_a_token_and_tokens_never_reach_the_store(serve, store_url, request):
    with serve(store_url, tokens=TOKEN) as server:
        with TemporecClient(server.target) as anonymous:
            for call, args in ((anonymous.track, [events("u", ["v1"])]), (anonymous.forget_user, ["u"])):
                assert code_of(call, *args)[0] is grpc.StatusCode.UNAUTHENTICATED
        with TemporecClient(server.target, token=TOKEN) as client:
            assert client.track(events("u", ["v1", "v2"])).stored == 2
            assert client.recommend("tiny", user_id="u").history_source == "store"
            assert client.forget_user("u") == 2
            client.track(events("u2", ["v3"]))
    if store_url.startswith("sqlite"):
        path = Path(store_url.removeprefix("sqlite://"))
        assert b"u2" in path.read_bytes() + wal(path) and TOKEN.encode() not in path.read_bytes() + wal(path)
    else:
        dump = redis_dump(request.getfixturevalue("redis_server"))  # the one store_url started
        assert "u2" in dump and TOKEN not in dump


def test_redis_stopped_fails_fast_explicit_histories_still_served_then_recovers(serve, redis_server):
    with serve(redis_server.url) as server, TemporecClient(server.target, timeout=30) as client:
        client.track(events("u", ["v1", "v2"]))
        redis_server.stop()
        for call, args in (
            (client.track, [events("u", ["v3"], 2)]),
            (client.get_history, ["u"]),
            (client.forget_user, ["u"]),
            (lambda: client.recommend("tiny", user_id="u"), []),
        ):
            code, details = code_of(call, *args)
            assert code is grpc.StatusCode.UNAVAILABLE and "store 'redis'" in details
        assert wait_for_health(client, "NOT_SERVING") == "NOT_SERVING"
        assert client.health() == "SERVING"  # the server itself still serves
        assert len(client.recommend("tiny", history=["v1", "v2"], k=3).items) == 3
        assert client.recommend("tiny", user_id="u", history=["v1"], k=3).history_source == "request"
        redis_server.start()  # the same port and append-only file: no server restart
        assert client.track(events("u", ["v3"], 2)).stored == 1
        assert [e.item_id for e in client.get_history("u")] == ["v1", "v2", "v3"]
        assert wait_for_health(client, "SERVING") == "SERVING"


def test_two_servers_sharing_one_redis_answer_a_user_alike(serve, redis_server):
    with serve(redis_server.url) as a, serve(redis_server.url) as b:
        with TemporecClient(a.target) as one, TemporecClient(b.target) as other:
            one.track(events("shared", ["v2", "v9"]))
            other.track(events("shared", ["v4"], 2))
            assert one.get_history("shared") == other.get_history("shared")
            same_answer(one.recommend("tiny", user_id="shared", k=5), other.recommend("tiny", user_id="shared", k=5))
            assert other.track(events("shared", ["v2"])).duplicates == 1  # a retry through the other replica
            other.forget_user("shared")
            assert one.get_history("shared") == []


# -- SIGKILL while ingesting ---------------------------------------------------------------


class ServeProcess:
    """``temporec serve`` in a subprocess with a store and no models (Track needs none)."""

    def __init__(self, url: str, models: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPOREC_")}
        env["TEMPOREC_PLUGINS"] = "sqlite,redis"
        command = [sys.executable, "-m", "temporec", "serve", "--host", "127.0.0.1", "--port", "0"]
        command += ["--models", str(models), "--device", "cpu", "--store", url]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        assert "serving on" in line, self.process.stderr.read()[-3000:]
        self.target = line.split("serving on ")[1].split()[0]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def ingest(target: str, batches: list[list[TrackedEvent]], acknowledged: list[int], enough: threading.Event) -> None:
    """Track the batches in order, recording each acknowledged one, until a call fails."""
    with TemporecClient(target, timeout=30) as client:
        for number, batch in enumerate(batches):
            try:
                client.track(batch)
            except TemporecError:
                break
            acknowledged.append(number)
            if len(acknowledged) >= 20:
                enough.set()
    enough.set()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_after_sigkill_every_acknowledged_event_is_there_and_retries_add_no_duplicates(kind, tmp_path, request):
    redis_server = request.getfixturevalue("redis_server") if kind == "redis" else None
    url = redis_server.url if redis_server else f"sqlite://{tmp_path}/history.db"
    (tmp_path / "models").mkdir()
    users = [f"user-{u}" for u in range(7)]
    batches = [
        [TrackedEvent(users[(b + i) % 7], f"b{b}-{i}", f"v{i % 20}", "view", T0 + b + i / 100) for i in range(50)]
        for b in range(2000)
    ]
    server = ServeProcess(url, tmp_path / "models")
    acknowledged: list[int] = []
    enough = threading.Event()
    client = threading.Thread(target=ingest, args=(server.target, batches, acknowledged, enough), daemon=True)
    client.start()
    enough.wait(timeout=300)
    server.kill()  # mid-stream: the client's call in flight fails
    if redis_server:
        redis_server.process.send_signal(signal.SIGKILL)  # Redis dies too: its append-only file must hold
        redis_server.process.wait(timeout=60)
        redis_server.start()
    client.join(timeout=120)
    assert 20 <= len(acknowledged) < len(batches)

    server = ServeProcess(url, tmp_path / "models")
    try:
        with TemporecClient(server.target, timeout=60) as retrying:
            held = {u: {e.event_id for e in retrying.get_history(u)} for u in users}
            acked = {e.event_id for n in acknowledged for e in batches[n]}
            assert acked <= set().union(*held.values())  # nothing acknowledged was lost
            sent = batches[: acknowledged[-1] + 2]  # the acknowledged ones and the one in flight
            retried = retrying.track_stream(sent)
            assert retried.stored + retried.duplicates == 50 * len(sent)
            again = [retrying.get_history(u) for u in users]
        ids = [e.event_id for history in again for e in history]
        assert len(ids) == len(set(ids)) == 50 * len(sent)  # each event once
    finally:
        server.stop()


def wait_for_health(client: TemporecClient, status: str) -> str:
    """The store's health status once it is ``status`` (it is polled about once a second),
    or whatever it still is after a minute."""
    until = time.monotonic() + 60
    while (now := client.health("temporec.v1.Recommender/store")) != status and time.monotonic() < until:
        time.sleep(0.1)
    return now


def wal(path: Path) -> bytes:
    log = path.with_name(path.name + "-wal")
    return log.read_bytes() if log.exists() else b""


def redis_dump(redis_server) -> str:
    """Every key and every value in Redis, as text."""
    client = redis_server.client()
    parts = []
    for key in client.scan_iter("*"):
        kind = client.type(key).decode()
        value = (
            client.zrange(key, 0, -1) if kind == "zset" else client.hgetall(key) if kind == "hash" else client.get(key)
        )
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)
