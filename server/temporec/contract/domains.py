"""The domain-recommender interface. Implementations are plugins (``register_domains``).

A domain owns its field: the action vocabulary, how its data sets are read into a
``Dataset`` (items with text, time-ordered histories), and the business rules that decide
which items may be returned for a request.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

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

    def apply_rules(self, query: Query, history: list[int], catalog: Catalog, allowed: torch.Tensor) -> list[str]:
        """Clear entries of ``allowed`` (a (len(catalog),) bool tensor, already limited to
        the request's candidates) for items that must not be returned, and return the
        names of the rules that were applied. ``history`` holds the catalog indices of
        the request's events that are in the catalog.

        The default rule: items already in the history are not recommended again unless
        the request allows repeats.
        """
        if query.allow_repeats or not history:
            return []
        allowed[torch.as_tensor(history, dtype=torch.long)] = False
        return ["exclude_history"]

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


def check_compatible(head: type, domain: type[Domain] | Domain) -> None:
    """Raise ``FailedPrecondition`` when ``domain``'s data lacks what ``head`` requires."""
    missing = set(getattr(head, "requires", ())) - set(domain.provides)
    if missing:
        raise FailedPrecondition(
            f"head: {head.name!r} requires {allowed(missing)} of the data, which domain {domain.name!r} "
            f"does not provide (it provides: {allowed(domain.provides)}); choose another head"
        )
