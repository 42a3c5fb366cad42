"""Moving each row's events between left and right padding.

Batches reach a head left-padded (the most recent event last in every row). Recurrent
networks and causal attention are simplest and fastest on right-padded rows, where every
row starts at its first real event: nothing real can then see padding, which lies after
it, so no padding mask is needed and attention can use its causal fast path.
"""

from __future__ import annotations

import torch


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
