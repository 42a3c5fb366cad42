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
    and ``mask`` (batch, length) bool. A head that sets ``reads_timestamps`` is called
    ``forward(events, mask, timestamps=...)`` instead: (batch, length) float64 Unix
    seconds, left-padded as ``events``, 0 on padding and where unknown; or None when the
    caller has no times at all. Such a head must work without them (a domain may not
    provide "timestamps"), or declare them in ``requires``.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: what the head needs of the data (see ``temporec.contract.domains.DATA_TRAITS``), e.g.
    #: {"timestamps"} for a head built on the time gaps; a domain must provide each
    requires: ClassVar[frozenset[str]] = frozenset()
    #: whether ``forward`` takes the events' ``timestamps`` (a keyword); off by default, so
    #: that heads written for ``forward(events, mask)`` keep working
    reads_timestamps: ClassVar[bool] = False

    def __init__(self, dim: int, max_len: int, **options: Any):
        super().__init__()
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"head {self.name!r}: unknown options {sorted(unknown)}; known: {sorted(self.options)}")
        self.dim = dim
        self.max_len = max_len
        self.config = {**self.options, **options}


# -- left and right padding -------------------------------------------------------------
# Batches reach a head left-padded (the most recent event last in every row). Recurrent
# networks and causal attention are simplest and fastest on right-padded rows, where every
# row starts at its first real event: nothing real can then see padding, which lies after
# it, so no padding mask is needed and attention can use its causal fast path.


def _rotate_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``x`` (B, L, ...) with row b rotated left by ``shifts[b]`` positions along dim 1."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device) + shifts.unsqueeze(1)) % length
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def padding_lengths(mask: torch.Tensor) -> torch.Tensor:
    """(B,) the number of padding positions of each left-padded row."""
    return (~mask).sum(1)


def to_front(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Left-padded ``x`` (B, L, ...) as right-padded: each row's first real event at 0."""
    return _rotate_rows(x, padding_lengths(mask))


def to_back(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inverse of ``to_front``: right-padded ``x`` back to the left padding of ``mask``."""
    return _rotate_rows(x, -padding_lengths(mask))
