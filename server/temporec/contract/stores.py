"""The event-store interface: users' tracked events, kept between requests. Implementations
are plugins (``register_stores``); the server opens the one its ``store`` URL names.

A store is called from worker threads, never on the server's event loop, so its methods
are plain blocking calls; they must be safe to call from several threads at once. A
store that cannot reach its backend raises ``temporec.Unavailable`` naming itself, quickly
(seconds, not minutes): the caller gets UNAVAILABLE and retries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence
from urllib.parse import urlsplit

from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.contract.types import Event


@dataclass(frozen=True)
class TrackedEvent:
    """One event of one user, as tracked: ``event_id`` is the client's, unique per user;
    a second event with the same (user_id, event_id) is a retry and is not stored."""

    user_id: str
    event_id: str
    event: Event


@dataclass(frozen=True)
class Exposure:
    """One answer of an A/B experiment's arm to one user (docs/realtime.md): the items
    shown, best first, and when (seconds since the epoch)."""

    experiment: str
    arm: str
    user_id: str
    request_id: str
    items: tuple[str, ...]
    timestamp: float


@dataclass(frozen=True)
class MonitoredText:
    """One published text as the monitor keeps it (docs/finance.md): the client's id
    (unique: a second text with it is a retry), when it was published (seconds since the
    epoch), where from, and what the monitor made of it: its sentiment label, the
    probability that it is negative, and its topics."""

    text_id: str
    text: str
    timestamp: float
    source: str
    label: str
    negative_probability: float
    topics: tuple[str, ...]


@dataclass(frozen=True)
class StoreSettings:
    """What every store honours. ``max_events``: the most events kept per user (the
    oldest go first); ``retention_seconds``: events older than this (by their timestamp)
    are dropped, 0 keeps them all."""

    max_events: int = 10_000
    retention_seconds: float = 0.0


class Store(ABC):
    """Per-user, time-ordered event histories. Subclasses set ``name``, the URL scheme
    that selects them (``sqlite`` for ``sqlite:///var/lib/temporec/history.db``)."""

    name: ClassVar[str] = ""

    def __init__(self, url: str, settings: StoreSettings):
        self.url = url
        self.settings = settings

    @abstractmethod
    def append(self, events: Sequence[TrackedEvent]) -> int:
        """Store ``events`` (any order, any users) and return how many were new; a
        (user_id, event_id) already stored is skipped. Durable when it returns."""

    @abstractmethod
    def history(self, user_id: str, limit: int) -> list[TrackedEvent]:
        """The user's ``limit`` most recent events, oldest first, ordered by timestamp
        (then arrival) however late they arrived."""

    @abstractmethod
    def forget(self, user_id: str) -> int:
        """Remove everything the store holds of the user; return how many events went."""

    # Experiments (optional: a store without them serves no server with experiments; the
    # server refuses to start with one). ``forget`` removes the user's exposures too.

    def record_exposure(self, exposure: Exposure) -> None:
        """Keep ``exposure``; durable when it returns."""
        raise FailedPrecondition(f"store {self.name!r} does not keep experiments")

    def exposures(self, experiment: str) -> list[Exposure]:
        """Every exposure of ``experiment``, oldest first."""
        raise FailedPrecondition(f"store {self.name!r} does not keep experiments")

    @classmethod
    def keeps_experiments(cls) -> bool:
        """Whether the store implements the experiment methods."""
        return cls.record_exposure is not Store.record_exposure and cls.exposures is not Store.exposures

    # The monitor (optional: a store without it serves no server with a [monitor] table).
    # Texts are kept in arrival order; alerts are opaque JSON documents under a key unique
    # per alert, numbered in the order they were first recorded.

    def record_texts(self, texts: Sequence[MonitoredText]) -> list[bool]:
        """Keep ``texts``; for each, whether it is new (its id was not stored). Durable when it returns."""
        raise FailedPrecondition(f"store {self.name!r} does not keep monitored texts")

    def monitored_texts(self) -> list[MonitoredText]:
        """Every kept text, in the order they were first recorded."""
        raise FailedPrecondition(f"store {self.name!r} does not keep monitored texts")

    def record_alert(self, key: str, document: str) -> tuple[int, bool]:
        """Keep an alert under ``key``; its sequence number, and whether it is new (an
        alert already kept under ``key`` keeps its number and document)."""
        raise FailedPrecondition(f"store {self.name!r} does not keep monitored texts")

    def alerts_after(self, sequence: int, limit: int) -> list[tuple[int, str]]:
        """The first ``limit`` alerts numbered above ``sequence``: (number, document)."""
        raise FailedPrecondition(f"store {self.name!r} does not keep monitored texts")

    def acknowledge(self, subscriber: str, sequence: int) -> int:
        """Raise ``subscriber``'s acknowledged number to ``sequence`` (never lower it); return it."""
        raise FailedPrecondition(f"store {self.name!r} does not keep monitored texts")

    def acknowledged(self, subscriber: str) -> int:
        """The last number ``subscriber`` acknowledged; 0 for a new one."""
        raise FailedPrecondition(f"store {self.name!r} does not keep monitored texts")

    @classmethod
    def keeps_monitor(cls) -> bool:
        """Whether the store implements the monitor's methods."""
        names = ("record_texts", "monitored_texts", "record_alert", "alerts_after", "acknowledge", "acknowledged")
        return all(getattr(cls, name) is not getattr(Store, name) for name in names)

    def healthy(self) -> bool:
        """Whether the store can serve right now (quickly)."""
        return True

    def describe(self) -> dict[str, str]:
        """Facts shown to operators; never a password."""
        return {"url": redact(self.url), "max_events": str(self.settings.max_events)}

    def close(self) -> None:  # noqa: B027 (optional: a store may hold nothing to release)
        """Release connections and files; called at server shutdown."""


def scheme(url: str) -> str:
    """The store name a URL selects: its scheme."""
    name = urlsplit(url).scheme
    if not name:
        raise InvalidArgument(f"store: {redact(url)!r} is not a URL; e.g. sqlite:///path/history.db")
    return name


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
