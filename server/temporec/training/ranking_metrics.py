"""Full-ranking metrics (see ``shared/docs/evaluation-protocol.md``).

The rank of a target is the number of items scored strictly higher than it, after the
user's history items are masked out; ties resolve in the target's favour. With ranks
counted from 0:

    HR@K   = share of users with rank < K
    NDCG@K = mean over users of 1 / log2(rank + 2) where rank < K, else 0
    MRR    = mean over users of 1 / (rank + 1)
"""

from __future__ import annotations

import numpy as np
import torch

KS = (5, 10, 20)


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, masked: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Ranks of ``targets`` (B,) within ``scores`` (B, n_items), ignoring the
    ``masked = (rows, items)`` entries (the history). ``scores`` is overwritten."""
    target_scores = scores.gather(1, targets.unsqueeze(1))
    scores.index_put_(masked, torch.tensor(float("-inf"), device=scores.device, dtype=scores.dtype))
    return (scores > target_scores).sum(1)


def summarize(ranks: np.ndarray | torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """``hr@K``, ``ndcg@K`` for each K, and ``mrr`` from 0-based ranks."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    if ranks.numel() == 0:
        raise ValueError("no ranks to summarize: the split has no users")
    metrics = {}
    for k in ks:
        hit = ranks < k
        metrics[f"hr@{k}"] = hit.double().mean().item()
        metrics[f"ndcg@{k}"] = torch.where(hit, 1 / torch.log2(ranks + 2), 0.0).mean().item()
    metrics["mrr"] = (1 / (ranks + 1)).mean().item()
    return metrics
