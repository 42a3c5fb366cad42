"""Training: next-item prediction with a temporal head over frozen LLM text embeddings.

At every position of every training window the model predicts the next item with a
softmax over the whole catalog (or, with ``negatives``, over the target and that many
uniformly sampled items), plus the head's auxiliary loss. AdamW; early stopping on
validation NDCG@10; the best epoch's weights are kept, evaluated on the test split
(with the popularity baseline) and saved as an artifact.

Every epoch writes a checkpoint under ``<out_dir>/.checkpoints/``; a run started again
with the same configuration, data and embeddings resumes after the last finished epoch.
The checkpoint is removed once the artifact is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from temporec.artifacts import Manifest, save_model
from temporec.data import DataError
from temporec.domains import Domain
from temporec.errors import InvalidArgument
from temporec.heads import Head
from temporec.model import EventBatch, SequenceRecommender
from temporec.training.evaluate import evaluate_all, evaluate_model, resolve_device
from temporec.training.splits import IGNORE, Sequences, TrainingExamples, encode, eval_split, training_examples
from temporec.types import Dataset

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainConfig:
    dim: int = 64
    max_len: int = 50
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.2
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    seed: int = 0
    use_text: bool = True
    use_ids: bool = True
    head_options: dict[str, Any] = field(default_factory=dict)
    negatives: int = 0  # 0: full softmax over the catalog; else sampled negatives per batch
    grad_clip: float = 5.0
    eval_batch_size: int = 256
    device: str = ""  # empty or "auto": CUDA when present, else the CPU

    def key_fields(self) -> dict[str, Any]:
        """What determines each epoch's weights: not the device, nor how many epochs a run
        may last (a killed run can be resumed with more)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "eval_batch_size", "epochs", "patience")}


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -1.0
    stale: int = 0  # epochs since the best
    losses: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def train(
    dataset: Dataset,
    head_cls: type[Head],
    text_embeddings: torch.Tensor,
    *,
    domain: type[Domain] | Domain,
    encoder_name: str,
    encoder_model_id: str,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    on_epoch: EpochCallback | None = None,
) -> Path:
    """Train ``head_cls`` on ``dataset`` for ``domain`` and save the model under ``out_dir``.

    ``text_embeddings`` (n_items, E) are the encoder's L2-normalized vectors of the
    catalog texts, in catalog order. ``on_epoch(epoch, {"loss", "valid.ndcg@10"})`` is
    called after each epoch's checkpoint is written. Returns the artifact directory.
    """
    config = config or TrainConfig()
    _check_inputs(dataset, text_embeddings, config)
    torch.set_num_threads(_available_cores())
    device = resolve_device(config.device)
    actions = list(domain.actions)
    seqs = encode(dataset, actions)
    examples = training_examples(seqs, config.max_len)
    if len(examples) == 0 or len(eval_split(seqs, "test").users) == 0:
        raise DataError(f"{dataset.name}: no user has the 4+ events that training and validation need")

    fingerprint = dataset.fingerprint()
    model = _build_model(head_cls, text_embeddings, len(actions), config).to(device)
    key = _run_key(fingerprint, head_cls, text_embeddings, domain, encoder_model_id, config)
    checkpoint = Checkpoint(Path(out_dir) / ".checkpoints" / f"{domain.name}-{head_cls.name}-{key}.pt")
    progress = _fit(model, seqs, examples, checkpoint, config, device, on_epoch)

    metrics = evaluate_all(model, seqs, config.max_len, config.eval_batch_size)
    metrics.update(best_epoch=float(progress.best_epoch), epochs=float(progress.epoch))
    manifest = Manifest(
        domain=domain.name,
        head=head_cls.name,
        encoder=encoder_name,
        encoder_model_id=encoder_model_id,
        dim=config.dim,
        max_len=config.max_len,
        actions=actions,
        head_options=dict(model.head.config),
        use_text=config.use_text,
        use_ids=config.use_ids,
        dropout=config.dropout,
        data_name=dataset.name,
        data_fingerprint=fingerprint,
        training=asdict(config),
        metrics=metrics,
    )
    popularity = torch.from_numpy(np.bincount(seqs.items, minlength=len(dataset.catalog))).float()
    path = save_model(out_dir, manifest, model, dataset.catalog, popularity)
    checkpoint.remove()
    return path


def _build_model(
    head_cls: type[Head], text_embeddings: torch.Tensor, n_actions: int, config: TrainConfig
) -> SequenceRecommender:
    torch.manual_seed(config.seed)
    try:
        head = head_cls(config.dim, config.max_len, **config.head_options)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"head options {config.head_options}: {exc}") from exc
    return SequenceRecommender(
        head, text_embeddings, n_actions, use_text=config.use_text, use_ids=config.use_ids, dropout=config.dropout
    )


def _fit(
    model: SequenceRecommender,
    seqs: Sequences,
    examples: TrainingExamples,
    checkpoint: Checkpoint,
    config: TrainConfig,
    device: torch.device,
    on_epoch: EpochCallback | None,
) -> Progress:
    """Train epochs (from the checkpoint, if any) until ``config.epochs`` or early stop,
    and leave the best epoch's weights in ``model``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    progress, best = checkpoint.restore(model, optimizer)
    while progress.epoch < config.epochs and progress.stale < config.patience:
        progress.epoch += 1
        loss = _train_epoch(model, optimizer, examples, config, progress.epoch, device)
        score = evaluate_model(model, seqs, "valid", config.max_len, config.eval_batch_size)["ndcg@10"]
        progress.losses.append(loss)
        progress.scores.append(score)
        if score > progress.best_score:
            progress.best_epoch, progress.best_score, progress.stale = progress.epoch, score, 0
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            progress.stale += 1
        log.info(
            "epoch %d: loss %.4f, valid NDCG@10 %.4f (best %.4f, epoch %d)",
            progress.epoch,
            loss,
            score,
            progress.best_score,
            progress.best_epoch,
        )
        checkpoint.save(model, optimizer, progress, best)
        if on_epoch:
            on_epoch(progress.epoch, {"loss": loss, "valid.ndcg@10": score})
    model.load_state_dict(best)
    return progress


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_inputs(dataset: Dataset, text_embeddings: torch.Tensor, config: TrainConfig) -> None:
    if text_embeddings.ndim != 2 or text_embeddings.shape[0] != len(dataset.catalog):
        shape, expected = tuple(text_embeddings.shape), (len(dataset.catalog), "dim")
        raise InvalidArgument(f"text_embeddings: shape {shape}; expected {expected}, one row per catalog item")
    if not (config.use_text or config.use_ids):
        raise InvalidArgument("config: use_text and use_ids are both off; items need text, ids or both")
    for name in ("dim", "max_len", "epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise InvalidArgument(f"config.{name}: {getattr(config, name)}; must be at least 1")


def _train_epoch(
    model: SequenceRecommender,
    optimizer: torch.optim.Optimizer,
    examples: TrainingExamples,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
) -> float:
    """One pass over the shuffled windows; returns the mean loss. The shuffle depends only
    on (seed, epoch), so a resumed run sees the same batches."""
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
    model.train()
    total, steps = 0.0, 0
    with tqdm(
        range(0, len(order), config.batch_size),
        desc=f"epoch {epoch}/{config.epochs}",
        unit="batch",
        disable=None,
        leave=False,
    ) as bar:
        for start in bar:
            batch, targets = examples.rows(order[start : start + config.batch_size])
            first = int(batch.mask.any(0).nonzero()[0])  # drop columns that are padding in every row
            batch = _columns(batch, first).to(device)
            targets = targets[:, first:].to(device)
            output = model(batch)
            known = targets != IGNORE
            loss = _next_item_loss(model, output.states[known], targets[known], config.negatives)
            if output.aux_loss is not None:
                loss = loss + output.aux_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
    return total / max(steps, 1)


def _columns(batch: EventBatch, first: int) -> EventBatch:
    return EventBatch(batch.items[:, first:], batch.actions[:, first:], batch.gaps[:, first:], batch.mask[:, first:])


def _next_item_loss(
    model: SequenceRecommender, states: torch.Tensor, targets: torch.Tensor, negatives: int
) -> torch.Tensor:
    """Cross-entropy of each target against the catalog, or against sampled negatives
    (the same ones for the whole batch; a negative equal to the target is ignored)."""
    if not negatives:
        return F.cross_entropy(states @ model.item_vectors().T, targets)
    sampled = torch.randint(model.n_items, (negatives,), device=states.device)
    positive = (states * model.item_vectors(targets)).sum(-1, keepdim=True)
    negative = (states @ model.item_vectors(sampled).T).masked_fill(sampled == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([positive, negative], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def _run_key(
    fingerprint: str, head_cls, text_embeddings: torch.Tensor, domain, encoder_model_id: str, config: TrainConfig
) -> str:
    """Identifies a training run: equal keys mean a checkpoint can be resumed."""
    digest = hashlib.sha256()
    described = {
        "config": config.key_fields(),
        "head": head_cls.name,
        "domain": domain.name,
        "actions": list(domain.actions),
        "encoder_model_id": encoder_model_id,
        "data": fingerprint,
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    digest.update(text_embeddings.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class Checkpoint:
    """The latest finished epoch of one run (its file name holds the run key), written atomically."""

    def __init__(self, path: Path):
        self.path = path

    def save(self, model, optimizer, progress: Progress, best: dict[str, torch.Tensor]) -> None:
        state = {
            "progress": asdict(progress),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best": best,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, self.path)

    def restore(self, model, optimizer) -> tuple[Progress, dict[str, torch.Tensor]]:
        """Load the checkpoint into ``model`` and ``optimizer`` if there is one for this
        run; returns the progress and the best weights so far (the initial ones when new)."""
        if not self.path.is_file():
            return Progress(), {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        progress = Progress(**state["progress"])
        log.info("resuming %s after epoch %d", self.path.name, progress.epoch)
        return progress, state["best"]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
