"""The monitor's data plane (the gRPC ``Monitor`` service translates to it): texts in,
classified by a loaded model of the configured domain, tagged with the domain's topics,
kept in the store, counted in their windows; alerts out, kept and numbered in the store,
pushed to every watcher, acknowledged per subscriber.

Durability: a text counts only once the store has kept it, and the in-memory windows are
a function of the kept texts in arrival order, so a restart rebuilds them (``start``).
Alerts are recorded under a key unique per (topic, window, kind); rebuilding records
again the alerts a crash may have lost between a text and its alert, and no alert twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from temporec.contract.errors import FailedPrecondition, InvalidArgument, NotFound, PluginError, allowed, plugin_call
from temporec.contract.stores import MonitoredText
from temporec.contract.types import Query
from temporec.monitor.alerts import Alert
from temporec.monitor.settings import MonitorSettings
from temporec.monitor.windows import ClosedWindow, Windows
from temporec.serving.validation import check_id

log = logging.getLogger(__name__)
ALERT_PAGE = 256  # alerts read from the store at a time by a watcher


@dataclass(frozen=True)
class IncomingText:
    text_id: str
    text: str
    timestamp: float  # seconds since the epoch
    source: str = ""


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    late: int = 0
    labels: Counter = field(default_factory=Counter)
    alerts: int = 0

    def add(self, other: IngestResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.late += other.late
        self.labels.update(other.labels)
        self.alerts += other.alerts


class Recorder(Protocol):
    """Where the monitor's texts and alerts are counted (``temporec.serving.metrics.ServerMetrics``)."""

    def record_monitored(self, labels: Counter) -> None: ...

    def record_alert(self, kind: str) -> None: ...


class Monitor:
    def __init__(self, service, settings: MonitorSettings, recorder: Recorder | None = None):
        """``service``: the ``RecommenderService`` whose models classify and whose store keeps."""
        store = service.history.store
        if store is None or not store.keeps_monitor():
            kept = "no store is configured" if store is None else f"store {store.name!r} does not keep them"
            raise FailedPrecondition(f"monitor: needs a store that keeps monitored texts ({kept}); use sqlite")
        self.service, self.settings, self.limits, self.recorder = service, settings, service.limits, recorder
        self.windows = Windows(settings.forecast, settings.negative_label, settings.alert_texts)
        self._lock = asyncio.Lock()  # one writer: arrival order in the store is the windows' order
        self._changed = asyncio.Event()  # set, and replaced, whenever an alert is recorded
        self._closed = asyncio.Event()

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the windows from the kept texts, recording any alert not yet kept."""
        texts = await self._store("monitored_texts")
        alerts = (await asyncio.to_thread(self._count, texts))[1]
        recorded = [await self._record(alert) for alert in alerts]
        log.info(
            "monitor: %d texts replayed into %d topics; %d alerts, %d of them new",
            len(texts),
            len(self.windows.topics),
            len(alerts),
            sum(new for _, new in recorded),
        )

    def close(self) -> None:
        """End every watcher's stream (the server is stopping)."""
        self._closed.set()

    # -- ingest -------------------------------------------------------------------

    async def ingest(self, texts: list[IncomingText]) -> IngestResult:
        """Classify, tag and keep ``texts``, and count the new ones in their windows."""
        self._check(texts)
        first: dict[str, IncomingText] = {}
        for text in texts:  # a repeat within the message is a duplicate: the first is kept
            first.setdefault(text.text_id, text)
        unique = list(first.values())
        monitored = await self._classify(unique)
        result = IngestResult(duplicates=len(texts) - len(unique))
        async with self._lock:
            new = await self._store("record_texts", monitored)
            kept = [text for text, is_new in zip(monitored, new) if is_new]
            result.stored, result.duplicates = len(kept), result.duplicates + len(monitored) - len(kept)
            result.labels.update(text.label for text in kept)
            # Closing windows fits every topic's model: off the event loop, still one writer.
            result.late, alerts = await asyncio.to_thread(self._count, kept)
            for alert in alerts:
                await self._record(alert)
            result.alerts = len(alerts)
        if self.recorder:
            self.recorder.record_monitored(result.labels)
        return result

    def _count(self, texts: list[MonitoredText]) -> tuple[int, list[Alert]]:
        """Count kept ``texts`` in their windows, in order: how many were late, and the
        alerts of the windows they closed."""
        late, alerts = 0, []
        for text in texts:
            was_late, closed = self.windows.add(text)
            late += was_late
            alerts += closed
        return late, alerts

    def _check(self, texts: list[IncomingText]) -> None:
        if not texts:
            raise InvalidArgument("texts: send at least one text")
        if len(texts) > self.limits.max_track_events:
            raise InvalidArgument(
                f"texts: at most {self.limits.max_track_events} a message (limits.max_track_events), got {len(texts)}"
            )
        for i, text in enumerate(texts):
            check_id(f"texts[{i}].id", text.text_id, self.limits)
            if not text.text.strip():
                raise InvalidArgument(f"texts[{i}].text: required")
            if len(text.text) > self.limits.max_text_chars:
                raise InvalidArgument(
                    f"texts[{i}].text: longer than {self.limits.max_text_chars} characters (limits.max_text_chars)"
                )
            if text.timestamp <= 0:
                raise InvalidArgument(f"texts[{i}].timestamp_ms: required (the time it was published), got 0")
            if len(text.source) > self.limits.max_item_id_chars:
                raise InvalidArgument(f"texts[{i}].source: longer than {self.limits.max_item_id_chars} characters")

    async def _classify(self, texts: list[IncomingText]) -> list[MonitoredText]:
        settings = self.settings
        query = Query(settings.domain, [], head=settings.head, model_version=settings.model_version, k=1)
        domain = self.service.domains.get(settings.domain)
        if domain is None:
            raise FailedPrecondition(
                f"monitor.domain: {settings.domain!r} is not installed; installed: {allowed(self.service.domains)}"
            )
        monitored: list[MonitoredText] = []
        step = self.limits.max_encode_texts
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            classified = await self.service.classify(query, [t.text for t in chunk])
            negative = self._negative_column(classified.classes, classified.model_version)
            topics = self._topics(domain, [t.text for t in chunk], classified.vectors)
            best = classified.probabilities.argmax(1).tolist()
            negatives = classified.probabilities[:, negative].tolist()
            monitored += [
                MonitoredText(t.text_id, t.text, t.timestamp, t.source, classified.classes[b], p, tags)
                for t, b, p, tags in zip(chunk, best, negatives, topics)
            ]
        return monitored

    def _negative_column(self, classes: list[str], version: str) -> int:
        if self.settings.negative_label not in classes:
            raise FailedPrecondition(
                f"monitor.negative_label: {self.settings.negative_label!r} is not a class of model {version!r}; "
                f"its classes: {allowed(classes)}"
            )
        return classes.index(self.settings.negative_label)

    def _topics(self, domain, texts: list[str], vectors) -> list[tuple[str, ...]]:
        what = f"domain {domain.name!r} topics"
        topics = plugin_call(what, domain.topics, texts, vectors)
        if len(topics) != len(texts) or not all(isinstance(t, (tuple, list)) for t in topics):
            raise PluginError(f"{what} returned {len(topics)} entries for {len(texts)} texts, not one tuple each")
        return [tuple(str(name) for name in t) for t in topics]

    # -- alerts -------------------------------------------------------------------

    async def _record(self, alert: Alert) -> tuple[int, bool]:
        sequence, new = await self._store("record_alert", alert.key, alert.document())
        if new:
            log.info(
                "alert %d: topic %r, window from %s, %s %.3g above %.3g (expected %.3g)",
                sequence,
                alert.topic,
                datetime.fromtimestamp(alert.window_start, timezone.utc).isoformat(timespec="minutes"),
                alert.kind,
                alert.observed,
                alert.high,
                alert.expected,
            )
            self._changed.set()
            self._changed = asyncio.Event()
            if self.recorder:
                self.recorder.record_alert(alert.kind)
        return sequence, new

    async def watch(self, subscriber: str, topics: list[str]) -> AsyncIterator[Alert]:
        """Every kept alert after the subscriber's acknowledged one, then new ones as they
        are recorded, until the server stops (or the caller stops iterating)."""
        check_id("subscriber_id", subscriber, self.limits)
        wanted = set(topics)
        cursor = await self._store("acknowledged", subscriber)
        while not self._closed.is_set():
            changed = self._changed  # taken before reading: an alert recorded meanwhile wakes us
            page = await self._store("alerts_after", cursor, ALERT_PAGE)
            for sequence, document in page:
                cursor = sequence
                alert = Alert.from_document(sequence, document)
                if not wanted or alert.topic in wanted:
                    yield alert
            if len(page) < ALERT_PAGE:
                await _first(changed.wait(), self._closed.wait())

    async def acknowledge(self, subscriber: str, sequence: int) -> int:
        check_id("subscriber_id", subscriber, self.limits)
        if sequence < 0:
            raise InvalidArgument(f"sequence: must not be negative, got {sequence}")
        return await self._store("acknowledge", subscriber, sequence)

    # -- series -------------------------------------------------------------------

    # Read while a worker thread may be counting: each is one copy of a list or dict, made
    # without releasing the GIL, so it sees a consistent state.

    def series(self, topic: str) -> list[ClosedWindow]:
        if not topic:
            raise InvalidArgument("topic: required")
        found = self.windows.topics.get(topic)
        if found is None:
            raise NotFound(f"topic: {topic!r} has no texts yet; topics: {allowed(self.topic_names())}")
        return list(found.closed)

    def topic_names(self) -> list[str]:
        return sorted(list(self.windows.topics))

    async def _store(self, method: str, *args):
        return await self.service.history.call("monitor", method, *args)


async def _first(*waits) -> None:
    """Return when the first of ``waits`` (coroutines) is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
