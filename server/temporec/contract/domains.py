"""The domain-recommender interface. Implementations are plugins (``register_domains``).

A domain owns its field: the action vocabulary, how its data sets are read into a
``Dataset`` (items with text, time-ordered histories), and the business rules that decide
which items may be returned for a request.

The rules say what a request may not get as a few catalog rows (``Domain.forbidden``,
built with ``Exclusions``), so that serving a million-item catalog allocates nothing of
the catalog's size per request. ``Domain.apply_rules``, the older hook, clears entries of
a (len(catalog),) mask; a plugin that implements only it keeps working (its mask is
turned into rows), and a mask is still what offline evaluation reads.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from temporec.contract.errors import FailedPrecondition, allowed
from temporec.contract.options import NoOptions
from temporec.contract.training import EvalRequest, Report, TrainConfig, TrainRequest
from temporec.contract.types import Catalog, Dataset, HandOff, Query

log = logging.getLogger(__name__)

#: What a domain's data may provide and a head may require (``Head.requires``).
DATA_TRAITS = {
    "timestamps": "events carry real times, so the time gaps between them mean something",
    "item_text": "every catalog item has a text for the encoder",
}


@dataclass
class Forbidden:
    """What one request may not get, in catalog rows: never ``items``; when ``only`` is not
    None, nothing outside it (a rule that keeps a few items, such as a category filter,
    says so instead of forbidding the rest of the catalog). ``rules`` names the rules that
    removed something the request could otherwise have had, in the order they ran."""

    items: np.ndarray  # (n,) int64 catalog rows
    rules: list[str]
    only: np.ndarray | None = None  # sorted, unique int64 catalog rows

    def mask(self, allowed: torch.Tensor) -> None:
        """Clear the forbidden entries of ``allowed``, a (len(catalog),) bool mask."""
        allowed[torch.from_numpy(self.items)] = False
        if self.only is not None:
            kept = torch.zeros_like(allowed)
            kept[torch.from_numpy(self.only)] = True
            allowed &= kept


def _rows(items: Iterable[int]) -> np.ndarray:
    """``items`` as sorted, unique int64 catalog rows."""
    if isinstance(items, np.ndarray):
        return np.unique(items.astype(np.int64, copy=False))
    return np.unique(np.fromiter(items, dtype=np.int64))


class Exclusions:
    """Builds a ``Forbidden`` from a domain's rules, each applied in turn and named when it
    removes something the request could still have had (among its candidates, when it
    lists some). Costs the size of the rules' own rows, not the catalog's."""

    def __init__(self, query: Query, catalog: Catalog):
        self.query, self.size = query, len(catalog)
        listed = [catalog.index[c] for c in query.candidates if c in catalog.index]
        self.candidates = _rows(listed) if query.candidates else None
        self.removed: set[int] = set()
        self.only: np.ndarray | None = None
        self.rules: list[str] = []

    def exclude(self, rule: str, items: Iterable[int], always: bool = False) -> None:
        """Forbid ``items``; ``always`` names the rule even when it removed nothing left."""
        rows = _rows(items)
        fresh = rows[~np.isin(rows, self._removed())] if self.removed else rows
        for limit in (self.candidates, self.only):
            if limit is not None:
                fresh = fresh[np.isin(fresh, limit)]
        self.removed.update(fresh.tolist())
        if len(fresh) or (always and len(rows)):
            self.rules.append(rule)

    def exclude_history(self, history: list[int]) -> None:
        """The default rule (``exclude_history``): the history's items, unless the request
        allows repeats."""
        if not self.query.allow_repeats:
            self.exclude("exclude_history", history, always=True)

    def keep_only(self, rule: str, items: Iterable[int]) -> None:
        """Forbid everything but ``items``."""
        before = self._left()
        kept = _rows(items)
        self.only = kept if self.only is None else np.intersect1d(self.only, kept, assume_unique=True)
        if self._left() < before:
            self.rules.append(rule)

    def _left(self) -> int:
        """How many items the request could still have."""
        pool = self.candidates
        if self.only is not None:
            pool = self.only if pool is None else np.intersect1d(pool, self.only, assume_unique=True)
        if pool is None:
            return self.size - len(self.removed)
        return len(pool) - int(np.isin(self._removed(), pool).sum())

    def _removed(self) -> np.ndarray:
        return np.fromiter(sorted(self.removed), np.int64, len(self.removed))

    def result(self) -> Forbidden:
        return Forbidden(self._removed(), self.rules, self.only)


class Domain(ABC):
    """Base class of domain recommenders.

    Subclasses set ``name``, ``actions`` (the first is the default for events that name
    none; or override ``action_vocabulary`` to take them from the data), ``default_head``
    and implement ``load_dataset``. ``provides`` names the
    ``DATA_TRAITS`` its data has (heads that require others are refused); a domain whose
    data lacks timestamps or item text says so. ``request_options`` is the dataclass of
    the options a request may set (see ``temporec.contract.options``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    actions: ClassVar[tuple[str, ...]] = ()
    default_head: ClassVar[str] = "lstm"
    provides: ClassVar[frozenset[str]] = frozenset(DATA_TRAITS)
    request_options: ClassVar[type] = NoOptions

    @abstractmethod
    def load_dataset(self, path: str) -> Dataset:
        """Read the data set at ``path`` (a file or directory) for training."""

    def action_vocabulary(self, dataset: Dataset) -> list[str]:
        """The actions of a model trained on ``dataset``, the first the default for events
        that name none; the model embeds each and a request may name only these. The
        default: ``actions``. A domain whose actions come from its data overrides it."""
        return list(self.actions)

    def forbidden(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        """The items ``query`` must not get, and the names of the rules that removed
        something it could otherwise have had (among its candidates, when it lists some);
        build it with ``Exclusions``. ``history`` holds the catalog indices of the
        request's events that are in the catalog. Called once per request: its cost
        should be that of the forbidden rows, not of the catalog (compute what depends on
        the catalog alone once, e.g. with ``Catalog.derived``).

        The default rule: items already in the history are not recommended again unless
        the request allows repeats. A domain that implements only ``apply_rules`` (the
        older hook) gets its mask's cleared entries here.
        """
        if _overrides(self, "apply_rules"):
            return self._forbidden_by_mask(query, history, catalog)
        return self._history_rule(query, history, catalog)

    def apply_rules(self, query: Query, history: list[int], catalog: Catalog, allowed: torch.Tensor) -> list[str]:
        """The older form of ``forbidden``: clear entries of ``allowed`` (a (len(catalog),)
        bool tensor, already limited to the request's candidates) for items that must not
        be returned, and return the names of the rules that were applied. The default
        applies ``forbidden``; offline evaluation reads the mask."""
        rule = self.forbidden if _overrides(self, "forbidden") else self._history_rule
        forbidden = rule(query, history, catalog)
        forbidden.mask(allowed)
        return list(forbidden.rules)

    def _history_rule(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        exclusions = Exclusions(query, catalog)
        exclusions.exclude_history(history)
        return exclusions.result()

    def _forbidden_by_mask(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        """``apply_rules``'s answer on a mask limited to the candidates, as rows."""
        allowed = torch.ones(len(catalog), dtype=torch.bool)
        listed = None
        if query.candidates:
            listed = torch.tensor([catalog.index[c] for c in query.candidates if c in catalog.index], dtype=torch.long)
            allowed = torch.zeros(len(catalog), dtype=torch.bool)
            allowed[listed] = True
        rules = list(self.apply_rules(query, history, catalog, allowed))
        cleared = (~allowed).nonzero().squeeze(1) if listed is None else listed[~allowed[listed]]
        return Forbidden(_rows(cleared.numpy()), rules)

    def hand_off(self, query: Query, scores: torch.Tensor, catalog: Catalog) -> HandOff | None:
        """Whether to pass the request to a human instead of answering it. ``scores``:
        the model's (len(catalog),) scores on its device, ``-inf`` where the rules or the
        candidates forbid an item. Called after ranking, not on a cold start. The default:
        None (the domain does not decide hand-offs)."""
        return None

    def topics(self, texts: list[str], vectors: torch.Tensor | None = None) -> list[tuple[str, ...]]:
        """The topics each of ``texts`` is about, for the monitor (docs/finance.md), which
        follows each topic's sentiment over time; ``vectors`` are the texts' embeddings
        by the model's encoder, when the caller has them. The default: none (every text
        still counts in the monitor's topic "all")."""
        return [() for _ in texts]

    # -- training and evaluation (``temporec train`` / ``temporec eval``) ----------------

    def training_config(self, dataset: Dataset, config: TrainConfig) -> TrainConfig:
        """The training settings for ``dataset``: the user's ``config`` fitted to this
        domain's data (e.g. no id embeddings for short-lived items, or the k-core that
        ``min_interactions`` keeps when the user chose none). The default keeps it."""
        return config

    def train(self, request: TrainRequest) -> Path:
        """Train ``request.head`` for this domain on the data at ``request.data`` and
        save the model under ``request.out_dir``; returns the artifact directory.

        The default reads the data with ``load_dataset``, fits the settings to it with
        ``training_config`` and runs the standard next-item training (``request.fit``).
        A domain whose data or objective differ (conversations, say) overrides it.
        """
        dataset = self.load_dataset(request.data)
        return request.fit(dataset, self.training_config(dataset, request.config))

    def evaluate(self, request: EvalRequest) -> Report:
        """Evaluate ``request.model`` (trained for this domain) on the data at
        ``request.data`` with this field's metrics, its baselines ranked side by side.
        Metric keys are ``<split>.<metric>`` for the model and
        ``<baseline>.<split>.<metric>`` for each baseline.

        The default: the standard leave-one-out (``request.leave_one_out``) on
        ``load_dataset(request.data)``, with the popularity baseline.
        """
        return request.leave_one_out(self.load_dataset(request.data))


def _overrides(domain: Domain, method: str) -> bool:
    return getattr(type(domain), method) is not getattr(Domain, method)


def hands_off(domain: Domain) -> bool:
    """Whether ``domain`` decides hand-offs (overrides ``hand_off``): only then does the
    service keep a request's whole score row for it."""
    return _overrides(domain, "hand_off")


def check_compatible(head: type, domain: type[Domain] | Domain) -> None:
    """Raise ``FailedPrecondition`` when ``domain``'s data lacks what ``head`` requires."""
    missing = set(getattr(head, "requires", ())) - set(domain.provides)
    if missing:
        raise FailedPrecondition(
            f"head: {head.name!r} requires {allowed(missing)} of the data, which domain {domain.name!r} "
            f"does not provide (it provides: {allowed(domain.provides)}); choose another head"
        )
