"""The Monitor service end to end (docs/finance.md): a real server on loopback with a real
SQLite store, a model trained here (a small three-class text classifier of the
customer_service domain over the tiny hash encoder: what the monitor needs of a model is
a catalog of classes, one of them "negative"), texts streamed through Ingest, alerts
watched, acknowledged, and a subscriber that disconnects and reconnects; a restart rebuilds
the same state from the store."""

from __future__ import annotations

import json
import queue
import threading

import grpc
import pytest

import temporec_plugins.domains.customer_service as cs_plugin
import temporec_plugins.heads.lstm as lstm_plugin
import temporec_plugins.stores.sqlite as sqlite_plugin
from conftest import TinyEncoder, TinyPlugin
from temporec.cli import main
from temporec.contract.errors import FailedPrecondition
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Event
from temporec.monitor.forecast import ForecastSettings
from temporec.monitor.monitor import Monitor
from temporec.monitor.settings import MonitorSettings
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig
from temporec.v1 import monitor_pb2, monitor_pb2_grpc
from temporec_client import MonitoredText, TemporecClient
from temporec_plugins.domains.customer_service import CustomerServiceDomain
from temporec_plugins.domains.customer_service.reader import Conversation, ConversationData
from temporec_plugins.domains.customer_service.training import embed_texts, train_conversations, turn_texts
from temporec_plugins.heads.lstm import LSTMHead

pytestmark = pytest.mark.slow

WINDOW = 60.0
T0 = 1_700_000_040.0  # a window's start (a multiple of WINDOW)
CLASSES = Catalog(["negative", "neutral", "positive"], ["bad news", "no news", "good news"])
TEXTS = {
    "negative": ["shares plunge on profit warning", "the bank cuts jobs", "losses widen again"],
    "neutral": ["the board meets on monday", "results are due in may", "the company moves offices"],
    "positive": ["profit doubles", "orders hit a record", "the shares rally"],
}
SETTINGS = MonitorSettings(
    domain="customer_service",
    alert_texts=2,
    forecast=ForecastSettings(
        window_s=WINDOW, min_order=0, max_order=1, seasons=(), warmup_windows=8, history_windows=50, min_count=5
    ),
)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A models directory with one model that tells the nine texts' classes apart."""
    root = tmp_path_factory.mktemp("monitor-models")
    conversations = [
        Conversation(f"{label}-{n}", [Event("", "user", 0.0, text)], [label])
        for label, texts in TEXTS.items()
        for n, text in enumerate(texts)
    ]
    data = ConversationData("sentiment", CLASSES, conversations, conversations, conversations)
    encoder = TinyEncoder()
    vectors = embed_texts(encoder, turn_texts(data))
    config = TrainConfig(dim=16, max_len=4, epochs=150, patience=150, batch_size=9, lr=2e-2, dropout=0.0)
    path = train_conversations(
        data,
        LSTMHead,
        encoder.encode(CLASSES.texts),
        vectors.__getitem__,
        domain=CustomerServiceDomain(),
        encoder_name="tiny-hash",
        encoder_model_id=encoder.model_id,
        out_dir=root,
        config=config,
    )
    assert (path / "manifest.json").is_file()
    return root


@pytest.fixture(scope="module")
def registry():
    plugins = {"tiny": TinyPlugin(), "cs": cs_plugin, "lstm": lstm_plugin, "sqlite": sqlite_plugin}
    return load_registry(extra_plugins=plugins, env={"TEMPOREC_PLUGINS": ""})


@pytest.fixture
def serve(start_grpc_server, registry, classifier, tmp_path):
    """``serve(**settings)``: a monitoring server on one SQLite file for the whole test."""
    store = f"sqlite://{tmp_path}/monitor.db"
    return lambda **fields: start_grpc_server(registry, classifier, store=store, monitor=SETTINGS, **fields)


def stub(server) -> tuple[grpc.Channel, monitor_pb2_grpc.MonitorStub]:
    channel = grpc.insecure_channel(server.target)
    return channel, monitor_pb2_grpc.MonitorStub(channel)


def text(n: int, window: int, label: str, variant: int = 0) -> monitor_pb2.MonitoredText:
    timestamp = T0 + window * WINDOW + 1 + n * 0.01
    return monitor_pb2.MonitoredText(
        id=f"w{window}-{n}", text=TEXTS[label][variant % 3], timestamp_ms=round(timestamp * 1000), source="wire"
    )


def ordinary_window(window: int) -> list[monitor_pb2.MonitoredText]:
    """Ten texts, one of them negative."""
    labels = ["negative"] + ["neutral"] * 5 + ["positive"] * 4
    return [text(n, window, label, n) for n, label in enumerate(labels)]


def surge_window(window: int) -> list[monitor_pb2.MonitoredText]:
    """Ten texts, eight of them negative."""
    labels = ["negative"] * 8 + ["neutral"] * 2
    return [text(n, window, label, n) for n, label in enumerate(labels)]


def ingest(monitor, *messages) -> monitor_pb2.IngestResponse:
    return monitor.Ingest(iter([monitor_pb2.IngestRequest(texts=m) for m in messages]), timeout=60)


def history(windows: int) -> list[list[monitor_pb2.MonitoredText]]:
    return [ordinary_window(w) for w in range(windows)]


class Watcher:
    """A WatchAlerts stream read on a thread: its alerts arrive on a queue."""

    def __init__(self, monitor, subscriber: str, topics=()):
        request = monitor_pb2.WatchAlertsRequest(subscriber_id=subscriber, topics=list(topics))
        self.call = monitor.WatchAlerts(request)
        self.alerts: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.alerts.put(response.alert)
        except grpc.RpcError:
            pass  # cancelled by the test, or the server stopped
        finally:
            self.ended.set()

    def next(self, timeout: float = 30.0):
        return self.alerts.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            self.alerts.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def cancel(self) -> None:
        self.call.cancel()
        self.ended.wait(10)


def test_texts_are_classified_kept_once_and_counted_in_their_windows(serve):
    with serve() as server:
        channel, monitor = stub(server)
        first = ingest(monitor, ordinary_window(0), ordinary_window(1))
        assert (first.stored, first.duplicates, first.messages) == (20, 0, 2)
        assert dict(first.labels) == {"negative": 2, "neutral": 10, "positive": 8}
        again = ingest(monitor, ordinary_window(1))  # a retried message
        assert (again.stored, again.duplicates) == (0, 10)
        late = ingest(monitor, [monitor_pb2.MonitoredText(id="old", text="profit doubles", timestamp_ms=1000)])
        assert (late.stored, late.late) == (1, 1)
        series = monitor.GetTopicSeries(monitor_pb2.GetTopicSeriesRequest(topic="all"))
        assert [(w.count, w.negatives) for w in series.windows] == [(10, 1)]  # window 1 is still open
        assert not series.windows[0].HasField("count_expected")  # no forecast during the warm-up
        assert series.topics == ["all"]
        channel.close()


def test_bad_texts_are_refused_naming_the_field(serve):
    with serve() as server:
        channel, monitor = stub(server)
        cases = {
            "texts[1].id: required": [text(0, 0, "neutral"), monitor_pb2.MonitoredText(text="x", timestamp_ms=5)],
            "texts[0].text: required": [monitor_pb2.MonitoredText(id="a", timestamp_ms=5)],
            "texts[0].timestamp_ms: required": [monitor_pb2.MonitoredText(id="a", text="x")],
        }
        for message, texts in cases.items():
            with pytest.raises(grpc.RpcError) as raised:
                ingest(monitor, texts)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in raised.value.details()
        with pytest.raises(grpc.RpcError) as raised:
            monitor.GetTopicSeries(monitor_pb2.GetTopicSeriesRequest(topic="sector:none"))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "sector:none" in raised.value.details()
        channel.close()


def test_a_negative_surge_alerts_its_watchers_with_the_texts_that_drove_it(serve):
    with serve() as server:
        channel, monitor = stub(server)
        watcher = Watcher(monitor, "desk")
        ingest(monitor, *history(12))
        assert watcher.none_within(0.5)  # ordinary windows fire nothing
        response = ingest(monitor, surge_window(12), ordinary_window(13))  # window 13's first text closes 12
        assert response.alerts >= 1
        alert = watcher.next()
        assert (alert.topic, alert.kind, alert.count, alert.negatives) == ("all", "negative_share", 10, 8)
        assert alert.observed == pytest.approx(0.8) and alert.observed > alert.high > alert.expected
        assert alert.window_start_ms == round((T0 + 12 * WINDOW) * 1000)
        assert alert.window_end_ms - alert.window_start_ms == WINDOW * 1000
        assert len(alert.texts) == 2 and all(t.text in TEXTS["negative"] for t in alert.texts)
        assert alert.texts[0].negative_probability >= alert.texts[1].negative_probability > 0.5
        assert alert.model
        watcher.cancel()
        channel.close()


def test_a_subscriber_that_reconnects_gets_what_it_had_not_acknowledged(serve):
    with serve() as server:
        channel, monitor = stub(server)
        ingest(monitor, *history(12), surge_window(12), ordinary_window(13))
        watcher = Watcher(monitor, "risk")
        first = watcher.next()
        watcher.cancel()  # disconnects without acknowledging

        again = Watcher(monitor, "risk")
        assert again.next().sequence == first.sequence  # not acknowledged: sent again
        acknowledged = monitor.AcknowledgeAlerts(
            monitor_pb2.AcknowledgeAlertsRequest(subscriber_id="risk", sequence=first.sequence)
        )
        assert acknowledged.acknowledged == first.sequence
        again.cancel()

        ingest(monitor, *[ordinary_window(w) for w in range(14, 20)], surge_window(20), ordinary_window(21))
        later = Watcher(monitor, "risk")
        alert = later.next()
        assert alert.sequence > first.sequence and alert.window_start_ms == round((T0 + 20 * WINDOW) * 1000)
        later.cancel()
        lower = monitor.AcknowledgeAlerts(monitor_pb2.AcknowledgeAlertsRequest(subscriber_id="risk", sequence=1))
        assert lower.acknowledged == first.sequence  # never lowered
        channel.close()


def test_a_restart_rebuilds_the_same_series_and_numbers_no_alert_twice(serve):
    def every_alert(monitor) -> list[tuple[int, str, int, str]]:
        watcher, found = Watcher(monitor, "ops"), []
        found.append(watcher.next())
        while True:
            try:
                found.append(watcher.next(timeout=0.5))
            except queue.Empty:
                break
        watcher.cancel()
        return [(a.sequence, a.topic, a.window_start_ms, a.kind) for a in found]

    with serve() as server:
        channel, monitor = stub(server)
        ingest(monitor, *history(12), surge_window(12), ordinary_window(13))
        before = monitor.GetTopicSeries(monitor_pb2.GetTopicSeriesRequest(topic="all"))
        alerts = every_alert(monitor)
        channel.close()
    with serve() as server:
        channel, monitor = stub(server)
        after = monitor.GetTopicSeries(monitor_pb2.GetTopicSeriesRequest(topic="all"))
        assert list(after.windows) == list(before.windows)
        assert every_alert(monitor) == alerts  # the same alerts under the same numbers, none added
        channel.close()


def test_watchers_streams_end_when_the_server_stops(serve):
    with serve() as server:
        channel, monitor = stub(server)
        watcher = Watcher(monitor, "night")
        assert watcher.none_within(0.3)
    assert watcher.ended.wait(15)
    channel.close()


def test_without_a_monitor_table_every_call_names_it(start_grpc_server, registry, classifier):
    with start_grpc_server(registry, classifier) as server:
        channel, monitor = stub(server)
        with pytest.raises(grpc.RpcError) as raised:
            ingest(monitor, ordinary_window(0))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "[monitor]" in raised.value.details()
        channel.close()


def test_a_monitor_needs_a_store_that_keeps_its_texts(registry, classifier):
    with pytest.raises(FailedPrecondition, match=r"monitor: needs a store .*\(no store is configured\)"):
        Monitor(RecommenderService(registry, classifier, device="cpu"), SETTINGS)


def test_the_python_client_ingests_watches_and_acknowledges(serve):
    def as_client(messages):
        return [[MonitoredText(t.id, t.text, t.timestamp_ms / 1000, t.source) for t in message] for message in messages]

    with serve() as server, TemporecClient(server.target) as client:
        ingested = client.ingest(as_client([*history(12), surge_window(12), ordinary_window(13)]))
        assert (ingested.stored, ingested.messages) == (140, 14) and ingested.alerts >= 1
        stream = client.watch_alerts("client", topics=["all"])
        alert = next(iter(stream))
        assert (alert.topic, alert.kind, alert.negatives) == ("all", "negative_share", 8)
        assert alert.window_end - alert.window_start == WINDOW and alert.texts[0].text in TEXTS["negative"]
        stream.close()
        assert client.acknowledge_alerts("client", alert.sequence) == alert.sequence
        windows, topics = client.topic_series("all")
        assert len(windows) == 13 and topics == ["all"]
        assert windows[-1].share_high is not None and windows[-1].negatives == 8
        assert windows[0].count_expected is None  # still warming up


def test_replay_streams_a_texts_file_and_writes_the_timeline_and_charts(serve, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the charts need matplotlib (the plot extra)")
    rows = [
        {"id": t.id, "text": t.text, "time": t.timestamp_ms / 1000, "source": t.source}
        for message in [*history(12), surge_window(12), ordinary_window(13)]
        for t in message
    ]
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in reversed(rows)))  # any order: replayed by time
    with serve() as server:
        code = main(["monitor", "replay", str(path), "--target", server.target, "--out", str(tmp_path / "out")])
    assert code == 0
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert ("all", "negative_share") in {(a["topic"], a["kind"]) for a in alerts}
    assert (tmp_path / "out" / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "140 texts stored" in printed and "all: negative share 0.8 above" in printed


def test_prometheus_counts_the_texts_by_label_and_the_alerts_by_kind(serve):
    from conftest import scrape
    from temporec.triton.local_server import free_port

    with serve(metrics_port=free_port()) as server:
        channel, monitor = stub(server)
        response = ingest(monitor, *history(12), surge_window(12), ordinary_window(13))
        metrics = scrape(server.server.metrics_port)
        assert (
            metrics["temporec_monitor_texts_total", frozenset({("label", "negative")})] == 12 + 8 + 1
        )  # the ordinary windows' one, the surge's eight
        assert metrics["temporec_monitor_texts_total", frozenset({("label", "neutral")})] == 60 + 2 + 5
        alerts = metrics["temporec_monitor_alerts_total", frozenset({("kind", "negative_share")})]
        assert alerts == response.alerts
        channel.close()
