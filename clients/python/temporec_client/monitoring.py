"""The Monitor service's types (docs/finance.md): texts to ingest, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporec_client.v1 import monitor_pb2 as pb


@dataclass(frozen=True)
class MonitoredText:
    """One published text: ``id`` is yours and unique (a retried text is counted once);
    ``timestamp`` when it was published (Unix seconds or an aware datetime)."""

    id: str
    text: str
    timestamp: float | datetime
    source: str = ""

    def to_proto(self, millis) -> pb.MonitoredText:
        return pb.MonitoredText(id=self.id, text=self.text, timestamp_ms=millis(self.timestamp), source=self.source)


@dataclass
class Ingested:
    """What an ``ingest`` stream did: texts stored now, retries, texts whose window had
    closed, labels of the stored texts, alerts fired, messages read."""

    stored: int
    duplicates: int
    late: int
    labels: dict[str, int]
    alerts: int
    messages: int

    @classmethod
    def from_proto(cls, response: pb.IngestResponse) -> Ingested:
        return cls(
            response.stored,
            response.duplicates,
            response.late,
            dict(response.labels),
            response.alerts,
            response.messages,
        )


@dataclass(frozen=True)
class AlertText:
    id: str
    text: str
    timestamp: float
    source: str
    negative_probability: float


@dataclass(frozen=True)
class Alert:
    """A topic's window that left its forecast (times in Unix seconds)."""

    sequence: int
    topic: str
    window_start: float
    window_end: float
    kind: str  # "negative_share" or "volume"
    observed: float
    expected: float
    low: float
    high: float
    count: int
    negatives: int
    model: str
    texts: list[AlertText] = field(default_factory=list)

    @classmethod
    def from_proto(cls, alert: pb.Alert) -> Alert:
        texts = [AlertText(t.id, t.text, t.timestamp_ms / 1000, t.source, t.negative_probability) for t in alert.texts]
        return cls(
            alert.sequence,
            alert.topic,
            alert.window_start_ms / 1000,
            alert.window_end_ms / 1000,
            alert.kind,
            alert.observed,
            alert.expected,
            alert.low,
            alert.high,
            alert.count,
            alert.negatives,
            alert.model,
            texts,
        )


@dataclass(frozen=True)
class TopicWindow:
    """One closed window of a topic; the forecast fields are None before its warm-up ended."""

    start: float
    count: int
    negatives: int
    count_expected: float | None
    count_high: float | None
    share_expected: float | None
    share_high: float | None

    @classmethod
    def from_proto(cls, window: pb.TopicWindow) -> TopicWindow:
        def optional(name: str) -> float | None:
            return getattr(window, name) if window.HasField(name) else None

        return cls(
            window.window_start_ms / 1000,
            window.count,
            window.negatives,
            *(optional(n) for n in ("count_expected", "count_high", "share_expected", "share_high")),
        )
