"""The temporal-head interface. Implementations are plugins (``register_heads``).

A head reads a batch of event vectors and returns, at every position, a user state in
item space: the model scores item ``j`` for a user as ``state @ item_vector[j]``, so any
item with text can be recommended, seen in training or not.

Batches are left-padded: the most recent event is at position ``-1`` for every row, and
``mask`` is False on padding. Heads must be causal: the state at position ``t`` may use
events ``<= t`` only (it is trained to predict event ``t + 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class HeadOutput:
    states: torch.Tensor  # (batch, length, dim): the predicted next-item vector per position
    aux_loss: torch.Tensor | None = None  # added to the training loss (e.g. a VAE's KL term)


class Head(nn.Module):
    """Base class of temporal heads.

    Subclasses set ``name``, document their keyword options in ``options`` (name ->
    default) and implement ``forward``. The constructor receives the model width
    ``dim``, the longest history ``max_len`` and the options (defaults filled in).

    ``forward(events, mask) -> HeadOutput`` takes ``events`` (batch, length, dim) float
    and ``mask`` (batch, length) bool.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: what the head needs of the data (see ``temporec.domains.DATA_TRAITS``), e.g.
    #: {"timestamps"} for a head built on the time gaps; a domain must provide each
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, dim: int, max_len: int, **options: Any):
        super().__init__()
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(
                f"head {self.name!r}: unknown options {sorted(unknown)}; known: {sorted(self.options)}"
            )
        self.dim = dim
        self.max_len = max_len
        self.config = {**self.options, **options}
