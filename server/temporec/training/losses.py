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

CPU_BLOCK_ROWS = 256  # 256 x a few thousand items of float32 logits fit in a core's L2
GPU_BLOCK_ROWS = 8192  # on a GPU large blocks win: fewer kernel launches


class _FullSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``targets`` against ``states @ items.T``; the gradient is
    computed in the forward pass (the loss is a scalar, so backward only scales it)."""

    @staticmethod
    def forward(ctx, states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, block: int):
        grad_states = torch.empty_like(states)
        grad_items = torch.zeros_like(items)
        total = states.new_zeros((), dtype=torch.float64)
        for start in range(0, len(states), block):
            rows = slice(start, start + block)
            total += _block_loss_and_grads(states[rows], items, targets[rows], grad_states[rows], grad_items)
        ctx.save_for_backward(grad_states, grad_items)
        ctx.count = len(states)
        return (total / max(len(states), 1)).to(states.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_states, grad_items = ctx.saved_tensors
        scale = grad_output / max(ctx.count, 1)
        return grad_states * scale, grad_items * scale, None, None


def _block_loss_and_grads(
    states: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    grad_states: torch.Tensor,
    grad_items: torch.Tensor,
) -> torch.Tensor:
    """Summed loss of one block of rows; writes the block's (unscaled) gradients:
    ``softmax - onehot`` times the other factor of the logits."""
    logits = states @ items.T
    rows = torch.arange(len(states), device=states.device)
    picked = logits[rows, targets]
    top = logits.amax(1, keepdim=True)
    probs = logits.sub_(top).exp_()  # in place: the logits are not needed again
    sums = probs.sum(1, keepdim=True)
    loss = (top.squeeze(1) + sums.squeeze(1).log() - picked).sum()
    probs.div_(sums)
    probs[rows, targets] -= 1
    torch.mm(probs, items, out=grad_states)
    grad_items.addmm_(probs.T, states)
    return loss


def full_softmax_cross_entropy(states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each row's target item against every item.

    ``states`` (N, D) user states, ``items`` (V, D) item vectors, ``targets`` (N,) long.
    Differentiable in ``states`` and ``items`` (call backward once per forward)."""
    if not (states.requires_grad or items.requires_grad):
        return F.cross_entropy(states @ items.T, targets)
    block = GPU_BLOCK_ROWS if states.is_cuda else CPU_BLOCK_ROWS
    return _FullSoftmaxCrossEntropy.apply(states, items, targets, block)


def sampled_softmax_cross_entropy(
    states: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: Callable[[torch.Tensor], torch.Tensor],
    n_items: int,
    negatives: int,
) -> torch.Tensor:
    """Cross-entropy of each target against ``negatives`` uniformly sampled items, the
    same ones for the whole batch (a negative equal to the row's target is ignored).
    ``item_vectors(index)`` gives the vectors of some items: the catalog's are never all
    computed, which is the point for catalogs too big for the full softmax."""
    sampled = torch.randint(n_items, (negatives,), device=states.device)
    positive = (states * item_vectors(targets)).sum(-1, keepdim=True)
    negative = (states @ item_vectors(sampled).T).masked_fill(sampled == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([positive, negative], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))
