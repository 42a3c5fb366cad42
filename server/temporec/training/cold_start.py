"""Reusable experiments on top of training: item representations and cold start.

Item representations (``with_items``): "text" (the frozen LLM text embedding, projected),
"ids" (a learned embedding per item id), or "hybrid" (both, summed).

Cold start (``hold_out_items`` or ``without_items``, then ``evaluate_cold_start``): items
are removed from the training data (every event of them), the model is trained on the
rest, and tested on the test cases of the full data (each user's last event) whose target
is such an item. Those items stay in the catalog: a model that reads text can score them
although it never saw them, while a model of ids alone has only their untrained id
embeddings. The histories are the full ones (cold items in them included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from temporec.contract.errors import InvalidArgument, allowed
from temporec.contract.types import Dataset
from temporec.model.recommender import SequenceRecommender
from temporec.training.leave_one_out import BASELINE, evaluate_model, rank_split
from temporec.training.next_item import TrainConfig
from temporec.training.ranking_metrics import summarize
from temporec.training.splits import EvalSplit, encode, eval_split

ITEM_REPRESENTATIONS = {
    "hybrid": {"use_text": True, "use_ids": True},
    "text": {"use_text": True, "use_ids": False},
    "ids": {"use_text": False, "use_ids": True},
}


def with_items(config: TrainConfig, representation: str) -> TrainConfig:
    """``config`` with items represented by ``representation``: "text", "ids" or "hybrid"."""
    if representation not in ITEM_REPRESENTATIONS:
        raise InvalidArgument(f"item representation {representation!r}; allowed: {allowed(ITEM_REPRESENTATIONS)}")
    return dataclasses.replace(config, **ITEM_REPRESENTATIONS[representation])


@dataclass
class ColdStartSplit:
    train: Dataset  # the data without any event of a cold item, over the full catalog
    cold_items: list[str]  # the held-out item ids


def hold_out_items(dataset: Dataset, fraction: float = 0.1, seed: int = 0) -> ColdStartSplit:
    """Hold out ``fraction`` of the catalog's items, chosen at random by ``seed``."""
    if not 0 < fraction < 1:
        raise InvalidArgument(f"cold-start fraction {fraction}; must be between 0 and 1")
    items = dataset.catalog.item_ids
    count = max(1, round(fraction * len(items)))
    chosen = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:count]
    return without_items(dataset, [items[i] for i in chosen.tolist()])


def without_items(dataset: Dataset, cold_items: Sequence[str]) -> ColdStartSplit:
    """Remove every event of ``cold_items`` from every history; users left without events
    are dropped. The catalog is kept whole."""
    unknown = [item for item in cold_items if item not in dataset.catalog.index]
    if unknown:
        raise InvalidArgument(f"cold items {unknown[:3]}: not in the catalog of {dataset.name}")
    cold = set(cold_items)
    sequences = {}
    for user, events in dataset.sequences.items():
        kept = [event for event in events if event.item_id not in cold]
        if kept:
            sequences[user] = kept
    train = Dataset(f"{dataset.name} without {len(cold)} cold items", dataset.catalog, sequences)
    return ColdStartSplit(train, sorted(cold))


def evaluate_cold_start(
    model: SequenceRecommender,
    dataset: Dataset,
    split: ColdStartSplit,
    actions: Sequence[str],
    max_len: int,
    batch_size: int = 256,
) -> dict[str, float]:
    """Metrics on the test cases of the full ``dataset`` whose target is a cold item
    (``cold.<metric>``) and on the others (``warm.<metric>``), the number of each
    (``cold.cases``, ``warm.cases``), and the popularity baseline of the training data on
    the cold cases (``popularity.cold.<metric>``: cold items have no training events)."""
    seqs = encode(dataset, actions)
    test = eval_split(seqs, "test")
    is_cold = cold_test_cases(dataset, split, test)
    cases = {name: _subset(test, rows) for name, rows in (("cold", is_cold), ("warm", ~is_cold))}
    metrics = {"cold.cases": float(is_cold.sum()), "warm.cases": float((~is_cold).sum())}
    for name, subset in cases.items():
        if len(subset.users):
            found = evaluate_model(model, seqs, subset, max_len, batch_size)
            metrics.update({f"{name}.{k}": v for k, v in found.items()})
    counts = _item_counts(split.train, len(dataset.catalog))
    ranks = rank_split(
        lambda users, _: counts.expand(len(users), -1).clone(), seqs, cases["cold"], 1024, torch.device("cpu")
    )
    metrics.update({f"{BASELINE}.cold.{k}": v for k, v in summarize(ranks).items()})
    return metrics


def cold_test_cases(dataset: Dataset, split: ColdStartSplit, test: EvalSplit) -> np.ndarray:
    """Which of the full data's ``test`` cases (in their order, as ``rank_split`` ranks
    them) have a cold item as their target; InvalidArgument when none has."""
    is_cold = np.isin(test.targets, [dataset.catalog.index[item] for item in split.cold_items])
    if not is_cold.any():
        raise InvalidArgument(f"{dataset.name}: no test target is a cold item; hold out more items")
    return is_cold


def _subset(cases: EvalSplit, rows: np.ndarray) -> EvalSplit:
    return EvalSplit(cases.users[rows], cases.stops[rows], cases.targets[rows])


def _item_counts(dataset: Dataset, n_items: int) -> torch.Tensor:
    index = dataset.catalog.index
    items = [index[event.item_id] for events in dataset.sequences.values() for event in events]
    return torch.from_numpy(np.bincount(np.asarray(items, dtype=np.int64), minlength=n_items)).float()
