"""Next-item losses: full softmax over the catalog, or sampled softmax.

The full softmax dominates a training step: ``(positions, n_items)`` logits, their
log-softmax and its gradient are several passes over a matrix far larger than the CPU's
caches. ``full_softmax_cross_entropy`` computes the loss and its gradient together, a
block of rows at a time, so each block of logits is written, turned into its gradient and
consumed while it is still in cache; nothing of size ``(positions, n_items)`` is kept.
The results equal ``F.cross_entropy(states @ items.T, targets)`` up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from temporec.model.repeats import columns

#: Terms added to some logits of each row: (N, K) item columns and (N, K) values.
Bonus = tuple[torch.Tensor, torch.Tensor]
CPU_BLOCK_ROWS = 256  # 256 x a few thousand items of float32 logits fit in a core's L2
GPU_BLOCK_ROWS = 8192  # on a GPU large blocks win: fewer kernel launches


class _FullSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``targets`` against ``states @ items.T``; the gradient is
    computed in the forward pass (the loss is a scalar, so backward only scales it)."""

    @staticmethod
    def forward(ctx, states, items, targets, block: int, bonus_columns=None, bonus=None):
        grad_states = torch.empty_like(states)
        grad_items = torch.zeros_like(items)
        grad_bonus = None if bonus is None else torch.empty_like(bonus)
        total = states.new_zeros((), dtype=torch.float64)
        for start in range(0, len(states), block):
            rows = slice(start, start + block)
            extra = None if bonus is None else (bonus_columns[rows], bonus[rows], grad_bonus[rows])
            total += _block_loss_and_grads(states[rows], items, targets[rows], grad_states[rows], grad_items, extra)
        ctx.save_for_backward(grad_states, grad_items, grad_bonus)
        ctx.count = len(states)
        return (total / max(len(states), 1)).to(states.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_states, grad_items, grad_bonus = ctx.saved_tensors
        scale = grad_output / max(ctx.count, 1)
        return (
            grad_states * scale,
            grad_items * scale,
            None,
            None,
            None,
            None if grad_bonus is None else grad_bonus * scale,
        )


def _block_loss_and_grads(
    states: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    grad_states: torch.Tensor,
    grad_items: torch.Tensor,
    bonus: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Summed loss of one block of rows; writes the block's (unscaled) gradients:
    ``softmax - onehot`` times the other factor of the logits. ``bonus``: (columns,
    values, their gradient) of terms added to some logits of each row (repeat scores)."""
    logits = states @ items.T
    if bonus is not None:
        logits.scatter_add_(1, bonus[0], bonus[1])
    rows = torch.arange(len(states), device=states.device)
    picked = logits[rows, targets]
    top = logits.amax(1, keepdim=True)
    probs = logits.sub_(top).exp_()  # in place: the logits are not needed again
    sums = probs.sum(1, keepdim=True)
    loss = (top.squeeze(1) + sums.squeeze(1).log() - picked).sum()
    probs.div_(sums)
    probs[rows, targets] -= 1
    if bonus is not None:
        torch.gather(probs, 1, bonus[0], out=bonus[2])
    torch.mm(probs, items, out=grad_states)
    grad_items.addmm_(probs.T, states)
    return loss


def full_softmax_cross_entropy(
    states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, bonus: Bonus | None = None
) -> torch.Tensor:
    """Mean cross-entropy of each row's target item against every item.

    ``states`` (N, D) user states, ``items`` (V, D) item vectors, ``targets`` (N,) long;
    ``bonus``: (N, K) item columns and values added to each row's logits (a repeat-aware
    model's history bonus). Differentiable in ``states``, ``items`` and the bonus values
    (call backward once per forward)."""
    if not (states.requires_grad or items.requires_grad):
        logits = states @ items.T
        return F.cross_entropy(logits if bonus is None else logits.scatter_add(1, *bonus), targets)
    block = GPU_BLOCK_ROWS if states.is_cuda else CPU_BLOCK_ROWS
    return _FullSoftmaxCrossEntropy.apply(states, items, targets, block, *(bonus or (None, None)))


def sampled_softmax_cross_entropy(
    states: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: Callable[[torch.Tensor], torch.Tensor],
    n_items: int,
    negatives: int,
    bonus: Bonus | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each target against ``negatives`` uniformly sampled items, the
    same ones for the whole batch (a negative equal to the row's target is ignored).
    ``item_vectors(index)`` gives the vectors of some items: the catalog's are never all
    computed, which is the point for catalogs too big for the full softmax. ``bonus``: as
    for ``full_softmax_cross_entropy``, added to the target and the sampled items it names.
    ``rows``: the catalog rows to sample from (all ``n_items`` when None)."""
    sampled = torch.randint(n_items if rows is None else len(rows), (negatives,), device=states.device)
    if rows is not None:
        sampled = rows[sampled]
    positive = (states * item_vectors(targets)).sum(-1, keepdim=True)
    negative = states @ item_vectors(sampled).T
    if bonus is not None:
        items, values = bonus
        positive = positive + (values * (items == targets.unsqueeze(1))).sum(1, keepdim=True)
        negative = negative.scatter_add(1, *columns(items, values, sampled, negatives))
    negative = negative.masked_fill(sampled == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([positive, negative], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def passed_over_cross_entropy(
    states: torch.Tensor,
    targets: torch.Tensor,
    passed: torch.Tensor,
    item_vectors: Callable[[torch.Tensor], torch.Tensor],
    bonus: Bonus | None = None,
) -> torch.Tensor | None:
    """Mean cross-entropy of each target against the items shown beside it that the user
    passed over (``passed``: (N, K) item indices, -1 beyond a row's own), over the rows that
    have any; None when none has. The negatives are what the user saw and did not choose,
    so the loss learns the choice among shown items (NRMS trains on impressions so).
    ``bonus``: as for ``full_softmax_cross_entropy``."""
    rows = (passed >= 0).any(1)
    if not rows.any():
        return None
    states, targets, passed = states[rows], targets[rows], passed[rows]
    shown = torch.cat([targets.unsqueeze(1), passed], dim=1)  # (n, 1 + K): the target first
    logits = torch.einsum("nd,nkd->nk", states, item_vectors(shown.clamp(min=0)))
    if bonus is not None:
        items, values = bonus[0][rows], bonus[1][rows]
        logits = logits + (values.unsqueeze(1) * (items.unsqueeze(1) == shown.unsqueeze(2))).sum(2)
    logits = logits.masked_fill(shown < 0, float("-inf"))
    return F.cross_entropy(logits, torch.zeros_like(targets))
