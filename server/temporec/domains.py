"""The domain-recommender interface. Implementations are plugins (``register_domains``).

A domain owns its field: the action vocabulary, how its data sets are read into a
``Dataset`` (items with text, time-ordered histories), and the business rules that decide
which items may be returned for a request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from temporec.types import Catalog, Dataset, Query


class Domain(ABC):
    """Base class of domain recommenders.

    Subclasses set ``name``, ``actions`` (the first is the default for events that name
    none), ``default_head`` and implement ``load_dataset``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    actions: ClassVar[tuple[str, ...]] = ()
    default_head: ClassVar[str] = "lstm"

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
