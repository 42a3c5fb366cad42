"""Leave-one-out evaluation of a model and of the popularity baseline, batched: each
batch of users is one matmul against the whole catalog, with history items masked.

Metric keys: ``<split>.<metric>`` for the model and ``popularity.<split>.<metric>`` for
the baseline, e.g. ``test.ndcg@10`` and ``popularity.test.ndcg@10``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from temporec.contract.encoders import Encoder
from temporec.contract.errors import InvalidArgument, NotFound, allowed
from temporec.contract.registry import Registry, load_registry
from temporec.contract.training import EvalRequest, Report, TrainConfig
from temporec.contract.types import Catalog, Dataset
from temporec.data import DataError, k_core
from temporec.model.artifacts import LoadedModel, Manifest, load_model
from temporec.model.devices import resolve_device  # noqa: F401  (re-exported for training code)
from temporec.model.recommender import SequenceRecommender
from temporec.training.ranking_metrics import summarize, target_ranks
from temporec.training.splits import (
    EvalSplit,
    Sequences,
    encode,
    eval_split,
    history_batch,
    history_pairs,
    passed_grid,
    prefix_counts,
)

SPLITS = ("valid", "test")
BASELINE = "popularity"

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, np.ndarray], torch.Tensor]  # (users, stops) -> (B, n_items) scores


def rank_split(
    score: Scorer, seqs: Sequences, split: str | EvalSplit, batch_size: int, device: torch.device
) -> torch.Tensor:
    """The target rank of every evaluated user of ``split`` (a split's name, or any cases),
    in the split's order. Users are scored in batches of similar history lengths: a batch
    is as wide as its longest history, so this leaves the head little padding."""
    s = eval_split(seqs, split) if isinstance(split, str) else split
    order = np.argsort(s.stops, kind="stable")
    ranks = torch.empty(len(order), dtype=torch.long)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        users, stops = s.users[chosen], s.stops[chosen]
        rows, items = history_pairs(seqs, users, stops)
        masked = (torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device))
        targets = torch.from_numpy(s.targets[chosen]).to(device)
        ranks[torch.from_numpy(chosen)] = target_ranks(score(users, stops).float(), targets, masked).cpu()
    return ranks


@contextlib.contextmanager
def scoring(model: SequenceRecommender, seqs: Sequences, max_len: int) -> Iterator[Scorer]:
    """``score(users, stops)``: the model's (B, n_items) scores after each row's history, in
    eval mode and without gradients for the duration (its train/eval mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            items = model.item_vectors()
            candidates = model.scoring_items(items)

            def score(users: np.ndarray, stops: np.ndarray) -> torch.Tensor:
                batch = history_batch(seqs, users, stops, max_len).to(model.device)
                return model.score(model.scoring_states(model(batch, items).states[:, -1]), candidates, batch)

            yield score
    finally:
        model.train(was_training)


def evaluate_model(
    model: SequenceRecommender,
    seqs: Sequences,
    split: str | EvalSplit,
    max_len: int,
    batch_size: int = 256,
) -> dict[str, float]:
    """The model's metrics on ``split`` ("valid", "test", or an ``EvalSplit`` of chosen
    cases), computed on the model's device; its train/eval mode is kept."""
    with scoring(model, seqs, max_len) as score:
        return summarize(rank_split(score, seqs, split, batch_size, model.device))


def evaluate_choice(
    model: SequenceRecommender, seqs: Sequences, split: str, max_len: int, batch_size: int = 256
) -> float | None:
    """The mean AUC of each ``split`` target against the items passed over beside it
    (``Event.passed_over``; ties count half): how well the model tells the chosen item from
    the others shown with it, which ranks over the whole catalog do not measure. None when
    no target of the split has any. Its train/eval mode is kept."""
    s = eval_split(seqs, split)
    passed = passed_grid(seqs, seqs.offsets[s.users] + s.stops)
    if passed is None:
        return None
    has = (passed >= 0).any(1).numpy()
    users, stops, targets, passed = s.users[has], s.stops[has], torch.from_numpy(s.targets[has]), passed[has]
    aucs = []
    with scoring(model, seqs, max_len) as score:
        for start in range(0, len(users), batch_size):
            rows = slice(start, start + batch_size)
            scores = score(users[rows], stops[rows]).cpu()
            chosen, others = scores.gather(1, targets[rows, None]), scores.gather(1, passed[rows].clamp(min=0))
            shown = passed[rows] >= 0
            wins = (others < chosen).float() + 0.5 * (others == chosen).float()
            aucs.append((wins * shown).sum(1) / shown.sum(1))
    return float(torch.cat(aucs).mean())


def evaluate_popularity(seqs: Sequences, split: str, n_items: int, batch_size: int = 1024) -> dict[str, float]:
    """Popularity baseline on ``split``: item counts over every user's events before
    that split's target, the user's history masked."""
    counts = prefix_counts(seqs, split, n_items)
    return summarize(
        rank_split(lambda users, _: counts.expand(len(users), -1).clone(), seqs, split, batch_size, torch.device("cpu"))
    )


def evaluate_recent(seqs: Sequences, split: str, n_items: int, batch_size: int = 1024) -> dict[str, float]:
    """The "recent" baseline on ``split``: the user's history items, the latest first,
    then every other item by popularity (counts before the split's target). Ranked as the
    model is: a target already in the history keeps its score while the history's other
    items are masked, so on repeat-heavy data it scores what repeating the history would."""
    counts = prefix_counts(seqs, split, n_items)
    popularity = counts / (counts.max() + 1)  # below 1: after every history item

    def score(users: np.ndarray, stops: np.ndarray) -> torch.Tensor:
        scores = popularity.expand(len(users), -1).clone()
        rows, items = history_pairs(seqs, users, stops)
        position = np.arange(len(rows)) - np.repeat(np.cumsum(stops) - stops, stops)  # within each history
        flat = torch.from_numpy(rows * n_items + items)
        scores.view(-1).scatter_reduce_(0, flat, torch.from_numpy(1.0 + position).float(), reduce="amax")
        return scores

    return summarize(rank_split(score, seqs, split, batch_size, torch.device("cpu")))


def evaluate_recent_artifact(model: LoadedModel, dataset: Dataset) -> dict[str, float]:
    """``evaluate_recent`` on both splits of ``dataset`` (already over ``model``'s catalog:
    ``restrict_to_catalog``), under the keys ``recent.<split>.<metric>``, beside what
    ``evaluate_artifact`` reports."""
    seqs = encode(dataset, model.manifest.actions)
    return {
        f"recent.{split}.{key}": value
        for split in SPLITS
        for key, value in evaluate_recent(seqs, split, len(model.catalog)).items()
    }


def evaluate_all(model: SequenceRecommender, seqs: Sequences, max_len: int, batch_size: int = 256) -> dict[str, float]:
    """Model and popularity metrics on both splits, under prefixed keys."""
    metrics = {}
    for split in SPLITS:
        metrics.update({f"{split}.{k}": v for k, v in evaluate_model(model, seqs, split, max_len, batch_size).items()})
    for split in SPLITS:
        baseline = evaluate_popularity(seqs, split, model.n_items)
        metrics.update({f"{BASELINE}.{split}.{k}": v for k, v in baseline.items()})
    return metrics


def restrict_to_catalog(dataset: Dataset, catalog: Catalog) -> tuple[Dataset, int]:
    """``dataset`` over ``catalog``: events of other items are dropped (and counted)."""
    sequences, dropped = {}, 0
    for user, events in dataset.sequences.items():
        kept = [event for event in events if event.item_id in catalog.index]
        dropped += len(events) - len(kept)
        if kept:
            sequences[user] = kept
    return Dataset(dataset.name, catalog, sequences), dropped


def load_domain_dataset(domain: str, path: str | os.PathLike, registry: Registry) -> Dataset:
    """Read ``path`` with the registered domain's reader (it decides the preprocessing)."""
    if domain not in registry.domains:
        raise NotFound(f"domain {domain!r} is not installed; installed: {allowed(registry.domains)}")
    if not Path(path).exists():
        raise DataError(f"{path}: no such file or directory")
    return registry.domains[domain]().load_dataset(str(path))


def trained_core(manifest: Manifest, dataset: Dataset, registry: Registry) -> int:
    """The ``min_interactions`` its model was trained with; for a model saved before the
    option was recorded, the one its domain chooses (which the domain then applied)."""
    recorded = manifest.training.get("min_interactions")
    if recorded is not None:
        return int(recorded)
    if manifest.domain not in registry.domains:
        return 0
    return registry.domains[manifest.domain]().training_config(dataset, TrainConfig()).min_interactions or 0


def evaluate_artifact(
    model: str | os.PathLike | LoadedModel,
    data: str | os.PathLike | Dataset | None = None,
    registry: Registry | None = None,
    batch_size: int = 256,
    device: str | None = None,
) -> Report:
    """Evaluate a saved model (leave-one-out) with the popularity baseline in the same run.

    ``data`` is a path read by the model's domain, or a ``Dataset``; by default the data
    the model was trained on (its manifest's ``data_name``). A ``LoadedModel`` stays on
    its device unless ``device`` is given; a path is loaded onto ``device`` (default: CUDA
    when present).
    """
    registry = registry or load_registry()
    loaded = model if isinstance(model, LoadedModel) else load_model(model, registry.heads)
    manifest = loaded.manifest
    if data is None:
        data = manifest.data_name
        if not data or not Path(data).exists():
            raise InvalidArgument(
                f"--data: the model's training data {data!r} is not there; give the data to evaluate on"
            )
    dataset = data if isinstance(data, Dataset) else load_domain_dataset(manifest.domain, data, registry)
    dataset = k_core(dataset, trained_core(manifest, dataset, registry))
    same = dataset.fingerprint() == manifest.data_fingerprint
    if not same:
        log.warning(
            "%s: not the data the model was trained on (its fingerprint differs); test targets may have been seen",
            dataset.name,
        )
    dataset, dropped = restrict_to_catalog(dataset, loaded.catalog)
    seqs = encode(dataset, manifest.actions)
    if device is not None or not isinstance(model, LoadedModel):
        loaded.model.to(resolve_device(device))
    metrics = evaluate_all(loaded.model, seqs, manifest.max_len, batch_size)
    users = len(eval_split(seqs, "test").users)
    return Report(
        str(loaded.path), manifest.head, dataset.name, manifest.data_fingerprint, same, users, dropped, metrics
    )


def eval_request(
    model: LoadedModel,
    data: str,
    open_encoder: Callable[[], Encoder],
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    open_base_encoder: Callable[[], Encoder] | None = None,
) -> EvalRequest:
    """The request that ``Domain.evaluate`` takes: its ``leave_one_out`` is
    ``evaluate_artifact`` on the dataset the domain read."""

    def leave_one_out(dataset: Dataset) -> Report:
        return evaluate_artifact(model, dataset, batch_size=batch_size)

    return EvalRequest(model, data, open_encoder, leave_one_out, batch_size, cache_dir, open_base_encoder)
