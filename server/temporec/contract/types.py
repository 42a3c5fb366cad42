"""The core's own data types: what flows between the transport, the service and plugins.

Item ids are strings everywhere outside a model; inside a model items are row indices
of the catalog.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One step of a user's history."""

    item_id: str
    action: str = ""
    timestamp: float = 0.0  # Unix seconds; 0 means unknown
    text: str = ""  # free text for an item the catalog lacks, or a chat turn
    #: items shown beside this one that the user passed over (an impression's unclicked
    #: articles): training ranks the event's item against them too (``TrainConfig.passed_over_weight``)
    passed_over: tuple[str, ...] = ()


@dataclass
class Catalog:
    """The items a domain can recommend: ids, their text, optional per-item features."""

    item_ids: list[str]
    texts: list[str]
    features: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.item_ids) != len(self.texts):
            raise ValueError("catalog: item_ids and texts differ in length")
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        if len(self.index) != len(self.item_ids):
            raise ValueError("catalog: duplicate item ids")
        self._derived: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.item_ids)

    def derived(self, name: str, build: Callable[[Catalog], Any]) -> Any:
        """``build(self)``, computed on first use and kept under ``name``: what a rule
        reads of the whole catalog (which items are out of stock, each item's category)
        is computed once per catalog, not per request. A catalog is not changed after it
        is built."""
        if name not in self._derived:
            self._derived[name] = build(self)
        return self._derived[name]

    def fingerprint(self) -> str:
        """A content hash: equal catalogs (ids, texts, features) give equal fingerprints."""
        digest = hashlib.sha256()
        for part in (self.item_ids, self.texts, self.features):
            digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
        return digest.hexdigest()[:16]


@dataclass
class Dataset:
    """Interaction histories (time-ordered per user) over a catalog."""

    name: str
    catalog: Catalog
    sequences: dict[str, list[Event]]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.catalog.fingerprint().encode())
        for user in sorted(self.sequences):
            digest.update(user.encode())
            for event in self.sequences[user]:
                passed = "\x1f" + "\x1d".join(event.passed_over) if event.passed_over else ""  # older data: as before
                digest.update(f"{event.item_id}\x1f{event.action}\x1f{event.timestamp}{passed}\x1e".encode())
        return digest.hexdigest()[:16]


@dataclass
class Limits:
    """Per-request size limits (configurable; see temporec.serving.config)."""

    max_history: int = 1024
    max_candidates: int = 100_000
    max_k: int = 1000
    max_text_chars: int = 8192
    max_encode_texts: int = 1024
    max_item_id_chars: int = 256
    max_explain_events: int = 64  # history events weighed per explained request
    max_track_events: int = 10_000  # events per Track call (or TrackStream message)


@dataclass
class Query:
    """A recommendation request, independent of transport."""

    domain: str
    history: list[Event]
    head: str = ""  # empty: the domain's default head
    encoder: str = ""  # empty: the encoder the chosen model was trained with
    user_id: str = ""
    candidates: list[str] = field(default_factory=list)  # empty: the whole catalog
    k: int = 10
    allow_repeats: bool = False
    #: the domain's options. From a transport: name -> value (strings or typed), or None for
    #: the defaults. The service reads them once (``read_options``), so the query a domain's
    #: rules and hand-off see holds an instance of its ``request_options`` dataclass.
    options: Any = None
    explain: bool = False  # weigh history events per recommended item (ScoredItem.contributions)
    explain_events: int = 0  # how many of the most recent events to weigh; 0: up to the limit
    model_version: str = ""  # empty: the newest loaded model that matches; set by an experiment's arm
    request_id: str = ""  # the transport's id of the call (logged with an experiment's exposure)


@dataclass
class Contribution:
    """How much one history event moved an item's score (occlusion)."""

    history_index: int  # the event's position in Query.history
    item_id: str  # the event's item id ("" for an event known by its text only)
    weight: float  # score(item | history) - score(item | history without this event)


@dataclass
class ScoredItem:
    item_id: str
    score: float
    text: str
    contributions: list[Contribution] = field(default_factory=list)  # when explained, largest first


@dataclass
class HandOff:
    """A domain's advice to pass the request to a human instead of answering it.

    Truthy when it recommends the hand-off."""

    recommended: bool
    confidence: float  # the domain's confidence in its top item, 0..1
    threshold: float  # what the confidence was compared with
    reason: str = ""  # why, in words, when recommended

    def __bool__(self) -> bool:
        return self.recommended


@dataclass
class Recommendation:
    items: list[ScoredItem]
    domain: str
    head: str
    encoder: str
    model_version: str
    cold_start: bool = False  # True: the history was empty, items come from the fallback ranking
    candidate_source: str = "catalog"  # "catalog" or "request"
    rules_applied: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    hand_off: HandOff | None = None  # set by domains that decide hand-offs (Domain.hand_off)
    history_source: str = "request"  # "request", "store" or "store+request"
    experiment: str = ""  # the experiment the user is in ("": none), and its arm
    arm: str = ""
