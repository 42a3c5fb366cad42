"""The monitor's state: every topic's open window and its closed ones, driven by the
texts' own time. Pure and synchronous: the same texts in the same order always give the
same windows, forecasts and alerts, which is how a restarted server rebuilds its state
from the store (``Windows.add`` over the kept texts, in arrival order).

Windows are aligned to multiples of ``window_s`` since the epoch (days start at 00:00
UTC). A text past the open window's end closes it, and every window up to the text's,
for every topic: a topic's quiet window is data (count 0). A text older than the open
window is late: kept by the caller, counted nowhere, since its window was decided.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from temporec.contract.stores import MonitoredText
from temporec.monitor.alerts import Alert, AlertText
from temporec.monitor.forecast import Forecast, ForecastSettings, Surge, TopicSeries

ALL = "all"  # the topic every text is in


@dataclass
class ClosedWindow:
    start: float
    count: int
    negatives: int
    forecast: Forecast | None  # None while the topic's history was too short


@dataclass
class Topic:
    """One topic: its series model, its closed windows, and the open window's tallies."""

    series: TopicSeries
    closed: list[ClosedWindow] = field(default_factory=list)
    count: int = 0
    negatives: int = 0
    worst: list[tuple[float, int, MonitoredText]] = field(default_factory=list)  # a min-heap of the most negative


class Windows:
    def __init__(self, settings: ForecastSettings, negative_label: str = "negative", alert_texts: int = 5):
        self.settings, self.negative_label, self.alert_texts = settings, negative_label, alert_texts
        self.topics: dict[str, Topic] = {}
        self.open_start: float | None = None
        self._arrivals = 0  # ties in the heap break by arrival

    @property
    def window_s(self) -> float:
        return self.settings.window_s

    def start_of(self, timestamp: float) -> float:
        return math.floor(timestamp / self.window_s) * self.window_s

    def add(self, text: MonitoredText) -> tuple[bool, list[Alert]]:
        """Count ``text`` in its topics' open window; whether it was late, and the alerts
        of the windows it closed."""
        start = self.start_of(text.timestamp)
        if self.open_start is not None and start < self.open_start:
            return True, []
        alerts = self._close_until(start) if self.open_start is not None else []
        self.open_start = start
        negative = text.label == self.negative_label
        for name in dict.fromkeys((ALL, *text.topics)):
            topic = self.topics.get(name) or self._new_topic(name)
            topic.count += 1
            topic.negatives += negative
            if negative:
                self._keep_worst(topic, text)
        return False, alerts

    def _new_topic(self, name: str) -> Topic:
        """A topic first seen now: its series starts at the open window (with the
        windows before it unknown, not empty)."""
        self.topics[name] = Topic(TopicSeries(self.settings))
        return self.topics[name]

    def _keep_worst(self, topic: Topic, text: MonitoredText) -> None:
        self._arrivals += 1
        entry = (text.negative_probability, -self._arrivals, text)  # the earlier text wins a tie
        if len(topic.worst) < self.alert_texts:
            heapq.heappush(topic.worst, entry)
        elif entry > topic.worst[0]:
            heapq.heapreplace(topic.worst, entry)

    def _close_until(self, start: float) -> list[Alert]:
        alerts: list[Alert] = []
        while self.open_start < start:
            for name, topic in self.topics.items():
                alerts.extend(self._close(name, topic, self.open_start))
            self.open_start += self.window_s
        return alerts

    def _close(self, name: str, topic: Topic, start: float) -> list[Alert]:
        forecast, surges = topic.series.judge(start, topic.count, topic.negatives)
        topic.closed.append(ClosedWindow(start, topic.count, topic.negatives, forecast))
        texts = tuple(
            AlertText(t.text_id, t.text, t.timestamp, t.source, t.negative_probability)
            for _, _, t in sorted(topic.worst, reverse=True)
        )
        alerts = [self._alert(name, topic, surge, forecast, texts) for surge in surges]
        topic.count, topic.negatives, topic.worst = 0, 0, []
        return alerts

    def _alert(self, name: str, topic: Topic, surge: Surge, forecast: Forecast | None, texts) -> Alert:
        """A surge over the latest ``surge.windows`` closed windows (a gradual one spans
        several): their span, texts and negatives; the texts of the latest window."""
        span = topic.closed[-surge.windows :]
        return Alert(
            name,
            span[0].start,
            span[-1].start + self.window_s,
            surge.kind,
            surge.observed,
            surge.expected,
            surge.low,
            surge.high,
            sum(w.count for w in span),
            sum(w.negatives for w in span),
            forecast.model if forecast else "",
            texts,
        )
