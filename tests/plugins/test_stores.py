"""The first-party event stores against real backends: an SQLite file and a real
redis-server (skipped, with the reason, where redis-server is not installed)."""

from __future__ import annotations

import sqlite3

import pytest

from temporec import Event, Exposure, MonitoredText, Store, StoreSettings, TrackedEvent
from temporec.contract.registry import load_registry

STORES = load_registry(env={"TEMPOREC_PLUGINS": "sqlite,redis"}).stores


def tracked(user: str, event_id: str, item: str = "v1", seconds: float = 1_700_000_000.0, **fields) -> TrackedEvent:
    return TrackedEvent(user, event_id, Event(item, fields.get("action", "view"), seconds, fields.get("text", "")))


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request, tmp_path):
    """``open_store(**settings)``: a fresh store of each kind; closed after the test."""
    url = (
        f"sqlite://{tmp_path}/history.db" if request.param == "sqlite" else request.getfixturevalue("redis_server").url
    )
    opened = []

    def open_(**settings):
        store = STORES[request.param](url, StoreSettings(**settings))
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def test_a_retried_event_id_is_stored_once(open_store):
    store = open_store()
    assert store.append([tracked("u1", "e1"), tracked("u1", "e2", "v2", 1_700_000_001)]) == 2
    assert store.append([tracked("u1", "e1"), tracked("u2", "e1")]) == 1  # the id is per user
    assert [t.event_id for t in store.history("u1", 10)] == ["e1", "e2"]
    assert [t.event_id for t in store.history("u2", 10)] == ["e1"]


def test_late_events_come_back_in_time_order(open_store):
    store = open_store()
    store.append([tracked("u", "late", "v3", 30.0), tracked("u", "first", "v1", 10.0)])
    store.append([tracked("u", "middle", "v2", 20.0), tracked("u", "same-time", "v4", 30.0)])
    history = store.history("u", 10)
    assert [t.event_id for t in history] == ["first", "middle", "late", "same-time"]  # ties: arrival
    assert [t.event.timestamp for t in history] == pytest.approx([10.0, 20.0, 30.0, 30.0])
    assert history[0].event == Event("v1", "view", pytest.approx(10.0), "")
    assert [t.event_id for t in store.history("u", 2)] == ["late", "same-time"]  # the most recent


def test_each_field_is_kept(open_store):
    store = open_store()
    store.append([tracked("ü", "é", "", 1.5, action="like", text="a new upload, «quoted»")])
    (back,) = store.history("ü", 5)
    assert (back.user_id, back.event_id, back.event.item_id, back.event.action) == ("ü", "é", "", "like")
    assert back.event.text == "a new upload, «quoted»" and back.event.timestamp == pytest.approx(1.5)


def test_the_cap_keeps_the_newest_events(open_store):
    store = open_store(max_events=3)
    store.append([tracked("u", f"e{t}", f"v{t}", 100.0 + t) for t in range(5)])
    store.append([tracked("u", "old", "v9", 1.0)])  # older than everything kept: dropped at once
    assert [t.event_id for t in store.history("u", 10)] == ["e2", "e3", "e4"]


def test_retention_drops_old_events(open_store):
    import time

    store = open_store(retention_seconds=3600)
    now = time.time()
    store.append([tracked("u", "old", "v1", now - 7200), tracked("u", "new", "v2", now - 60)])
    assert [t.event_id for t in store.history("u", 10)] == ["new"]


def test_forget_removes_the_user_and_only_them(open_store):
    store = open_store()
    store.append([tracked("gone", f"e{t}", seconds=float(t)) for t in range(4)] + [tracked("kept", "e0")])
    assert store.forget("gone") == 4
    assert store.history("gone", 10) == [] and store.forget("gone") == 0
    assert len(store.history("kept", 10)) == 1


def test_forget_leaves_nothing_in_the_sqlite_file(tmp_path):
    store = STORES["sqlite"](f"sqlite://{tmp_path}/h.db", StoreSettings())
    store.append([tracked("secret-user", f"e{t}", seconds=float(t)) for t in range(3)])
    store.record_exposure(Exposure("exp", "a", "secret-user", "r1", ("v1", "v2"), 5.0))
    store.record_exposure(Exposure("exp", "a", "other", "r2", ("v1",), 6.0))
    store.forget("secret-user")
    on_disk = b"".join(path.read_bytes() for path in tmp_path.glob("h.db*"))  # the file and its log
    assert b"secret-user" not in on_disk  # while the store is still open
    store.close()
    database = sqlite3.connect(tmp_path / "h.db")
    assert database.execute("SELECT * FROM events").fetchall() == []
    assert database.execute("SELECT user_id FROM exposures").fetchall() == [("other",)]


def test_forget_leaves_no_redis_key_of_the_user(redis_server):
    store = STORES["redis"](redis_server.url, StoreSettings())
    store.append([tracked("secret-user", f"e{t}", seconds=float(t)) for t in range(3)] + [tracked("other", "e")])
    store.record_exposure(Exposure("exp", "a", "secret-user", "r1", ("v1", "v2"), 5.0))
    store.record_exposure(Exposure("exp", "a", "other", "r2", ("v1",), 6.0))
    store.forget("secret-user")
    client = redis_server.client()
    keys = [key.decode() for key in client.scan_iter("*")]
    assert keys and not [key for key in keys if "secret-user" in key]
    values = [client.dump(key) for key in keys]  # every value, serialized
    assert not [value for value in values if b"secret-user" in value]
    assert [e.user_id for e in store.exposures("exp")] == ["other"]
    store.close()


def test_redis_down_is_unavailable_naming_the_store_then_recovers(redis_server):
    from temporec import Unavailable

    store = STORES["redis"](redis_server.url, StoreSettings())
    store.append([tracked("u", "e1")])
    redis_server.stop()
    with pytest.raises(Unavailable, match=r"store 'redis' \(redis://127\.0\.0\.1"):
        store.append([tracked("u", "e2")])
    assert not store.healthy()
    redis_server.start()
    assert store.append([tracked("u", "e2", seconds=1_700_000_001)]) == 1  # the same store reconnects
    assert [t.event_id for t in store.history("u", 5)] == ["e1", "e2"]  # the append-only file kept e1
    store.close()


def test_a_password_never_shows(redis_server):
    store = STORES["redis"](f"redis://:hunter2@127.0.0.1:{redis_server.port}/0", StoreSettings())
    assert "hunter2" not in str(store.describe())
    store.close()


def test_a_url_no_store_handles_is_refused_naming_the_installed_ones():
    from temporec import FailedPrecondition
    from temporec.serving.history import open_store

    registry = load_registry(env={"TEMPOREC_PLUGINS": "sqlite,redis"})
    with pytest.raises(FailedPrecondition, match=r"no installed store handles 'mongodb' URLs .*'redis', 'sqlite'"):
        open_store(registry, "mongodb://:secret@db/0", 10, 0)
    with pytest.raises(FailedPrecondition) as refused:
        open_store(registry, "mongodb://:secret@db/0", 10, 0)
    assert "secret" not in str(refused.value)


def test_exposures_come_back_in_time_order_per_experiment(open_store):
    store = open_store()
    late = Exposure("exp", "b", "ü", "r2", ("v3", "«v4»"), 1_700_000_010.5)
    early = Exposure("exp", "a", "u1", "r1", ("v1",), 1_700_000_000.25)
    tie = Exposure("exp", "a", "u2", "r3", (), 1_700_000_010.5)
    for exposure in (late, early, tie, Exposure("other", "a", "u1", "r4", ("v1",), 1.0)):
        store.record_exposure(exposure)
    back = store.exposures("exp")
    assert [e.request_id for e in back] == ["r1", "r2", "r3"]  # ties: arrival
    assert back[1] == Exposure("exp", "b", "ü", "r2", ("v3", "«v4»"), pytest.approx(1_700_000_010.5))
    assert [e.request_id for e in store.exposures("other")] == ["r4"] and store.exposures("none") == []
    store.forget("u1")
    assert [e.request_id for e in store.exposures("exp")] == ["r2", "r3"] and store.exposures("other") == []


def test_a_store_without_experiments_says_so():
    from temporec import FailedPrecondition

    class Minimal(Store):
        name = "minimal"

        def append(self, events):
            return 0

        def history(self, user_id, limit):
            return []

        def forget(self, user_id):
            return 0

    store = Minimal("minimal:", StoreSettings())
    assert not Minimal.keeps_experiments() and all(STORES[n].keeps_experiments() for n in ("sqlite", "redis"))
    with pytest.raises(FailedPrecondition, match="store 'minimal' does not keep experiments"):
        store.record_exposure(Exposure("e", "a", "u", "r", (), 0.0))
    with pytest.raises(FailedPrecondition, match="store 'minimal' does not keep experiments"):
        store.exposures("e")


def test_sqlite_keeps_monitored_texts_alerts_and_acknowledgements(tmp_path):
    store = STORES["sqlite"](f"sqlite://{tmp_path}/monitor.db", StoreSettings())
    first = MonitoredText("t1", "Shares «fall»", 1_700_000_000.25, "wire", "negative", 0.9, ("all", "macro:rates"))
    second = MonitoredText("t2", "Profit up", 1_699_999_000.0, "", "positive", 0.05, ())
    assert store.record_texts([first, second, first]) == [True, True, False]  # a retry is not new
    assert store.record_texts([second]) == [False]
    assert store.monitored_texts() == [first, second]  # arrival order, not time order
    assert store.record_alert("all|1|volume", '{"a": 1}') == (1, True)
    assert store.record_alert("all|1|volume", '{"a": 2}') == (1, False)  # the first document stays
    assert store.record_alert("all|2|volume", '{"b": 1}')[1]
    numbers = [n for n, _ in store.alerts_after(0, 10)]
    assert len(numbers) == 2 and numbers[0] == 1 < numbers[1]  # increasing; a refused key may leave a gap
    assert (
        store.alerts_after(0, 10)[0] == (1, '{"a": 1}') and store.alerts_after(1, 10) == store.alerts_after(0, 10)[1:]
    )
    assert store.alerts_after(0, 1) == store.alerts_after(0, 10)[:1]
    assert store.acknowledged("desk") == 0
    assert store.acknowledge("desk", 3) == 3 and store.acknowledge("desk", 1) == 3  # never lowered
    store.close()
    reopened = STORES["sqlite"](f"sqlite://{tmp_path}/monitor.db", StoreSettings())
    assert reopened.monitored_texts() == [first, second] and reopened.acknowledged("desk") == 3
    reopened.close()


def test_which_stores_keep_the_monitor():
    assert STORES["sqlite"].keeps_monitor() and not STORES["redis"].keeps_monitor()
