"""The domain-recommender interface. Implementations are plugins (``register_domains``).

A domain owns its field: the action vocabulary, how its data sets are read into a
``Dataset`` (items with text, time-ordered histories), and the business rules that decide
which items may be returned for a request.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from temporec.errors import FailedPrecondition, allowed
from temporec.options import NoOptions
from temporec.types import Catalog, Dataset, HandOff, Query

if TYPE_CHECKING:  # the training side imports this module
    from temporec.artifacts import LoadedModel
    from temporec.encoders import Encoder
    from temporec.heads import Head
    from temporec.training.evaluate import Report
    from temporec.training.train import TrainConfig

log = logging.getLogger(__name__)

#: What a domain's data may provide and a head may require (``Head.requires``).
DATA_TRAITS = {
    "timestamps": "events carry real times, so the time gaps between them mean something",
    "item_text": "every catalog item has a text for the encoder",
}


class Domain(ABC):
    """Base class of domain recommenders.

    Subclasses set ``name``, ``actions`` (the first is the default for events that name
    none), ``default_head`` and implement ``load_dataset``. ``provides`` names the
    ``DATA_TRAITS`` its data has (heads that require others are refused); a domain whose
    data lacks timestamps or item text says so. ``request_options`` is the dataclass of
    the options a request may set (see ``temporec.options``).
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

    def apply_rules(
        self, query: Query, history: list[int], catalog: Catalog, allowed: torch.Tensor
    ) -> list[str]:
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

    # -- training and evaluation (``temporec train`` / ``temporec eval``) ----------------

    def training_config(self, dataset: Dataset, config: TrainConfig) -> TrainConfig:
        """The training settings for ``dataset``: the user's ``config`` fitted to this
        domain's data (e.g. no id embeddings for short-lived items). The default keeps it."""
        return config

    def train(
        self,
        data: str,
        head_cls: type[Head],
        encoder: Encoder,
        *,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
    ) -> Path:
        """Train ``head_cls`` for this domain on the data at ``data`` and save the model
        under ``out_dir``; returns the artifact directory. ``encoder`` embeds the item
        texts, through the embedding cache in ``cache_dir`` (default: see
        ``temporec.embedding_cache``).

        The default reads ``data`` with ``load_dataset`` and trains next-item prediction
        (``temporec.training.train``) with ``training_config``. A domain whose data or
        objective differ (conversations, say) overrides it.
        """
        from temporec.embedding_cache import catalog_embeddings
        from temporec.training.train import train

        dataset = self.load_dataset(data)
        users, items = len(dataset.sequences), len(dataset.catalog)
        events = sum(map(len, dataset.sequences.values()))
        log.info("%s: %d users, %d items, %d events", dataset.name, users, items, events)
        config = self.training_config(dataset, config)
        if config.use_text:
            embeddings = catalog_embeddings(encoder, dataset.catalog, cache_dir=cache_dir)
        else:  # a model without a text tower never reads them: store none
            embeddings = torch.zeros(len(dataset.catalog), 0)
        return train(
            dataset,
            head_cls,
            embeddings,
            domain=self,
            encoder_name=encoder.name,
            encoder_model_id=encoder.model_id,
            out_dir=out_dir,
            config=config,
        )

    def evaluate(
        self,
        model: LoadedModel,
        data: str,
        open_encoder: Callable[[], Encoder],
        *,
        batch_size: int = 256,
        cache_dir: str | os.PathLike | None = None,
    ) -> Report:
        """Evaluate ``model`` (trained for this domain) on the data at ``data`` with this
        field's metrics, its baselines ranked side by side. ``open_encoder()`` returns
        the model's encoder, started on first call (that can take seconds): call it only
        to embed texts the model does not hold, through the cache in ``cache_dir``.
        Metric keys are ``<split>.<metric>`` for the model and
        ``<baseline>.<split>.<metric>`` for each baseline.

        The default: leave-one-out on ``load_dataset(data)`` (each user's last event the
        test, the one before it the validation target; ``batch_size`` users per matmul)
        with the popularity baseline (``temporec.training.evaluate_artifact``).
        """
        from temporec.training.evaluate import evaluate_artifact

        return evaluate_artifact(model, self.load_dataset(data), batch_size=batch_size)


def check_compatible(head: type, domain: type[Domain] | Domain) -> None:
    """Raise ``FailedPrecondition`` when ``domain``'s data lacks what ``head`` requires."""
    missing = set(getattr(head, "requires", ())) - set(domain.provides)
    if missing:
        raise FailedPrecondition(
            f"head: {head.name!r} requires {allowed(missing)} of the data, which domain {domain.name!r} "
            f"does not provide (it provides: {allowed(domain.provides)}); choose another head"
        )
