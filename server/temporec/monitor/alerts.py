"""What the monitor tells: a topic's window that left its forecast, with the texts that
drove it. Kept in the store as a JSON document under a key unique per (topic, window,
kind), so that recording an alert again (after a restart, say) keeps its first number."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class AlertText:
    text_id: str
    text: str
    timestamp: float
    source: str
    negative_probability: float


@dataclass(frozen=True)
class Alert:
    topic: str
    window_start: float  # seconds since the epoch; the window is [start, end)
    window_end: float
    kind: str  # "negative_share" | "volume"
    observed: float
    expected: float
    low: float
    high: float
    count: int
    negatives: int
    model: str
    texts: tuple[AlertText, ...]
    sequence: int = 0  # the store's number; 0 until recorded

    @property
    def key(self) -> str:
        return f"{self.topic}|{self.window_start:.0f}|{self.kind}"

    def document(self) -> str:
        fields = asdict(self)
        del fields["sequence"]  # the store numbers it
        return json.dumps(fields, ensure_ascii=False)

    @classmethod
    def from_document(cls, sequence: int, document: str) -> Alert:
        fields = json.loads(document)
        texts = tuple(AlertText(**text) for text in fields.pop("texts"))
        return cls(**fields, texts=texts, sequence=sequence)

    def numbered(self, sequence: int) -> Alert:
        return replace(self, sequence=sequence)
