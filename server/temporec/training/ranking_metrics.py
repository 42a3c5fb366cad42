"""Full-ranking metrics (see ``shared/docs/evaluation-protocol.md``).

The rank of a target is the number of items scored strictly higher than it, after the
user's history items are masked out; ties resolve in the target's favour. With ranks
counted from 0:

    HR@K   = share of users with rank < K
    NDCG@K = mean over users of 1 / log2(rank + 2) where rank < K, else 0
    MRR    = mean over users of 1 / (rank + 1)
"""

from __future__ import annotations

from collections.abc import Sequence

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
    names = [f"{name}@{k}" for k in ks for name in ("hr", "ndcg")] + ["mrr"]
    return {name: per_user(ranks, name).mean().item() for name in names}


def per_user(ranks: torch.Tensor, metric: str) -> torch.Tensor:
    """Each user's share of ``metric`` (``hr@K``, ``ndcg@K`` or ``mrr``): the metric is their mean."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    if metric == "mrr":
        return 1 / (ranks + 1)
    name, _, k = metric.partition("@")
    if name not in ("hr", "ndcg") or not k.isdigit():
        raise ValueError(f"metric {metric!r}: expected hr@K, ndcg@K or mrr")
    hit = ranks < int(k)
    return hit.double() if name == "hr" else torch.where(hit, 1 / torch.log2(ranks + 2), 0.0)


def bootstrap_interval(
    ranks: np.ndarray | torch.Tensor, metric: str, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval of ``metric`` over users: how far the mean could
    move were the same number of users drawn again (the uncertainty of a small test set)."""
    return mean_interval(per_user(torch.as_tensor(ranks), metric), level, resamples, seed)


def mean_interval(
    values: Sequence[float] | torch.Tensor, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` (one per user or case)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    means = values[torch.randint(len(values), (resamples, len(values)), generator=generator)].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high


def summarize_with_intervals(
    ranks: np.ndarray | torch.Tensor, metrics: Sequence[str] = ("hr@10", "ndcg@10", "mrr")
) -> dict:
    """``summarize(ranks)``, and for each of ``metrics`` its ``<metric>_low`` and
    ``<metric>_high``: the 95% bootstrap interval over users."""
    result = summarize(ranks)
    for metric in metrics:
        result[f"{metric}_low"], result[f"{metric}_high"] = bootstrap_interval(ranks, metric)
    return result
