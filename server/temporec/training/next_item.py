"""Training: next-item prediction with a temporal head over frozen LLM text embeddings.

At every position of every training window the model predicts the next item with a
softmax over the whole catalog (or, with ``negatives``, over the target and that many
uniformly sampled items), plus the head's auxiliary loss; a target shown beside items
the user passed over (``Event.passed_over``: an impression) is also ranked against those
alone. AdamW, with an optional linear warm-up and cosine decay of the learning rate
(``Schedule``); early stopping on validation NDCG@10, or the choice among shown items
where the data has them (``validation_score``); the best epoch's weights are kept, evaluated on the test split
(with the popularity baseline) and saved as an artifact. ``time_budget_s`` bounds the
training time (epochs and validation, summed over resumed parts).

Every epoch writes a checkpoint under ``<out_dir>/.checkpoints/``; a run started again
with the same configuration, data and embeddings resumes after the last finished epoch.
The checkpoint is removed once the artifact is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from temporec.contract.domains import Domain, check_compatible
from temporec.contract.encoders import Encoder
from temporec.contract.errors import FailedPrecondition, InvalidArgument, allowed
from temporec.contract.heads import Head
from temporec.contract.training import TrainConfig, TrainRequest
from temporec.contract.types import Catalog, Dataset
from temporec.data import DataError, k_core
from temporec.files import replaced_atomically
from temporec.model.artifacts import Manifest, load_model, save_model
from temporec.model.embedding_cache import catalog_embeddings
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.model.repeats import columns
from temporec.model.tuned_encoder import TunedEncoder
from temporec.training.distributed import Ranks, joined
from temporec.training.encoder_tuning import (
    TUNES_ENCODER,
    TextTuning,
    check_tuning,
    parameter_groups,
    record_tuning,
    tuned_encoder,
)
from temporec.training.leave_one_out import evaluate_all, evaluate_choice, evaluate_model
from temporec.training.losses import (
    full_softmax_cross_entropy,
    passed_over_cross_entropy,
    sampled_softmax_cross_entropy,
)
from temporec.training.splits import (
    IGNORE,
    Sequences,
    TrainingExamples,
    encode,
    eval_split,
    training_examples,
)

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
BUCKET_GROUP = 50  # batches' worth of windows sorted by length together (``length_buckets``)


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -1.0
    stale: int = 0  # epochs since the best
    seconds: float = 0.0  # training and validation time so far, over every resumed part
    losses: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    steps: int = 0  # optimizer steps so far


SCHEDULES = ("constant", "cosine")
TUNINGS = ("frozen", "adaptor", *TUNES_ENCODER)  # TrainConfig.tuning


@dataclass
class Schedule:
    """The learning rate at each optimizer step: a linear warm-up over ``warmup_steps``, then
    constant, or a cosine decay that reaches 0 when the run ends. The run ends at its last
    epoch or when its time budget is spent, whichever comes first, so the decay follows the
    larger of the two fractions done: a run bounded by time anneals as its clock runs out
    (lowering the rate late is what lets a run settle in a minimum rather than hover)."""

    lr: float
    warmup_steps: int
    cosine: bool
    total_steps: int  # epochs x steps per epoch
    started: float  # ``time.monotonic()`` at the start of the whole run
    budget: float  # seconds; ``math.inf`` when unbounded

    def __call__(self, step: int, clock: float | None = None) -> float:
        """The rate at ``step``; ``clock``: the seconds since ``started`` (read from the
        clock when None; several ranks pass rank 0's, so that they all step alike)."""
        rate = self.lr * min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else self.lr
        if not self.cosine:
            return rate
        clock = time.monotonic() - self.started if clock is None else clock
        done = max(step / self.total_steps, clock / self.budget)
        return rate * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


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
    text_encoder: TunedEncoder | None = None,
) -> Path:
    """Train ``head_cls`` on ``dataset`` for ``domain`` and save the model under ``out_dir``.

    ``text_embeddings`` (n_items, E) are the encoder's L2-normalized vectors of the
    catalog texts, in catalog order. ``on_epoch(epoch, {"loss", "valid.<measure>",
    "seconds"})`` (``validation_score``'s measure) is called after each epoch's checkpoint
    is written. ``text_encoder``: the language model
    to tune when ``config.tuning`` trains it (``encoder_tuning``); it then gives the text
    vectors. Returns the artifact directory.
    """
    config = config or TrainConfig()
    if config.negatives is None:  # no domain chose: the full softmax, recorded as such
        config = replace(config, negatives=0)
    if config.min_interactions is None:  # ``dataset`` is what it trains on
        config = replace(config, min_interactions=0)
    if config.repeat_aware is None:
        config = replace(config, repeat_aware=False)
    if config.use_ids is None:
        config = replace(config, use_ids=True)
    if config.passed_over_weight is None:
        config = replace(config, passed_over_weight=1.0)
    check_compatible(head_cls, domain)  # a head that needs what the domain's data lacks
    _check_inputs(dataset, text_embeddings, config)
    torch.set_num_threads(config.threads or default_threads())
    domain = domain() if isinstance(domain, type) else domain  # a class is as good as its instance
    actions = domain.action_vocabulary(dataset)
    _check_item_fields(dataset, actions, config)
    seqs = encode(dataset, actions)
    examples = training_examples(seqs, config.max_len)
    if len(examples) == 0 or len(eval_split(seqs, "test").users) == 0:
        raise DataError(f"{dataset.name}: no user has the 4+ events that training and validation need")

    with joined(config.device) as ranks:
        fingerprint = dataset.fingerprint()
        features = feature_values(dataset.catalog, config.item_features)
        model = build_model(head_cls, text_embeddings, len(actions), config, features)
        if config.init_from:
            start_from(model, config.init_from, head_cls, dataset.catalog)
        tuning = _text_tuning(model, text_encoder, dataset, config)
        model.to(ranks.device)
        counts = np.bincount(seqs.items, minlength=len(dataset.catalog))  # events per catalog item
        _train_only_seen_ids(model, torch.from_numpy(counts == 0))
        softmax_rows = None if config.unseen_negatives or counts.all() else torch.from_numpy(np.flatnonzero(counts))
        key = _run_key(fingerprint, head_cls, text_embeddings, domain, actions, encoder_model_id, config)
        checkpoint = Checkpoint(Path(out_dir) / ".checkpoints" / f"{domain.name}-{head_cls.name}-{key}.pt")
        weights = (
            torch.tensor([config.target_weights.get(action, 1.0) for action in actions])
            if config.target_weights
            else None
        )
        progress = _fit(model, seqs, examples, checkpoint, config, on_epoch, weights, tuning, ranks, softmax_rows)

        def save() -> Path:  # the best weights, tested and saved (by rank 0 alone)
            if tuning:
                tuning.finish()
            metrics = evaluate_all(model, seqs, config.max_len, config.eval_batch_size)
            metrics.update(best_epoch=float(progress.best_epoch), epochs=float(progress.epoch))
            manifest = training_manifest(
                model, config, domain, encoder_name, encoder_model_id, actions, dataset.name, fingerprint, metrics
            )
            if tuning:
                record_tuning(manifest, config)
            popularity = torch.from_numpy(counts).float()
            path = save_model(out_dir, manifest, model, dataset.catalog, popularity)
            checkpoint.remove()
            return path

        return ranks.from_main(save)


def _text_tuning(
    model: SequenceRecommender, text_encoder: TunedEncoder | None, dataset: Dataset, config: TrainConfig
) -> TextTuning | None:
    """What tunes the language model in this run, attached to ``model``; None when nothing does."""
    if config.tuning not in TUNES_ENCODER:
        return None
    if text_encoder is None:
        raise InvalidArgument(f"config.tuning: {config.tuning!r} needs the language model to tune (text_encoder)")
    if text_encoder.dim != model.text_embeddings.shape[1]:
        raise InvalidArgument(
            f"text_encoder: width {text_encoder.dim}, the text embeddings' {model.text_embeddings.shape[1]}"
        )
    model.text_encoder = text_encoder
    tuning = TextTuning(model, dataset.catalog.texts, config.tuned_items_per_step)
    tuning.refresh()  # at the tuned encoder's text length, as every later refresh
    return tuning


def train_request(
    domain: Domain,
    data: str,
    head_cls: type[Head],
    encoder: Encoder,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
) -> TrainRequest:
    """The request that ``Domain.train`` takes: its ``fit`` embeds the catalog with
    ``encoder`` (through the embedding cache) and runs ``train`` for ``domain``."""

    def fit(dataset: Dataset, fitted: TrainConfig) -> Path:
        fitted = replace(fitted, min_interactions=fitted.min_interactions or 0)  # None: the domain chose none
        dataset = k_core(dataset, fitted.min_interactions)
        events = sum(map(len, dataset.sequences.values()))
        log.info(
            "%s: %d users, %d items, %d events", dataset.name, len(dataset.sequences), len(dataset.catalog), events
        )
        text_encoder = None
        if fitted.use_text and fitted.tuning in TUNES_ENCODER:  # the tuned encoder gives the vectors
            text_encoder = tuned_encoder(encoder, fitted)
            embeddings = torch.zeros(len(dataset.catalog), text_encoder.dim)
        elif fitted.use_text or fitted.ids_from_text:
            embeddings = catalog_embeddings(encoder, dataset.catalog, cache_dir=cache_dir)
        else:  # a model without a text tower never reads them: store none
            embeddings = torch.zeros(len(dataset.catalog), 0)
        return train(
            dataset,
            head_cls,
            embeddings,
            domain=domain,
            encoder_name=encoder.name,
            encoder_model_id=encoder.model_id,
            out_dir=out_dir,
            config=fitted,
            text_encoder=text_encoder,
        )

    return TrainRequest(data, head_cls, encoder, config, Path(out_dir), fit, cache_dir)


def training_manifest(
    model: SequenceRecommender,
    config: TrainConfig,
    domain: type[Domain] | Domain,
    encoder_name: str,
    encoder_model_id: str,
    actions: list[str],
    data_name: str,
    data_fingerprint: str,
    metrics: dict[str, float],
) -> Manifest:
    """The manifest of a model trained with ``config``: what a server needs to rebuild it."""
    return Manifest(
        domain=domain.name,
        head=model.head.name,
        encoder=encoder_name,
        encoder_model_id=encoder_model_id,
        dim=config.dim,
        max_len=config.max_len,
        actions=actions,
        head_options=dict(model.head.config),
        use_text=model.use_text,
        use_ids=model.use_ids,
        item_features=sorted(config.item_features),
        dropout=config.dropout,
        similarity=model.similarity,
        temperature=model.temperature,
        text_projection=model.text_projection,
        adaptor_experts=model.adaptor_experts,
        scale_ids=model.scale_ids,
        repeat_aware=model.repeats is not None,
        data_name=data_name,
        data_fingerprint=data_fingerprint,
        training=asdict(config),
        metrics=metrics,
    )


def feature_values(catalog: Catalog, names: list[str]) -> dict[str, torch.Tensor]:
    """Each named catalog feature as (n_items,) indices of its values (sorted, from 0)."""
    indexed = {}
    for name in names:
        values = catalog.features[name]
        index = {value: i for i, value in enumerate(sorted(set(values)))}
        indexed[name] = torch.tensor([index[value] for value in values], dtype=torch.long)
    return indexed


def build_model(
    head_cls: type[Head],
    text_embeddings: torch.Tensor,
    n_actions: int,
    config: TrainConfig,
    features: dict[str, torch.Tensor] | None = None,
) -> SequenceRecommender:
    torch.manual_seed(config.seed)
    try:
        head = head_cls(config.dim, config.max_len, **config.head_options)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"head options {config.head_options}: {exc}") from exc
    try:
        model = SequenceRecommender(
            head,
            text_embeddings if config.use_text else text_embeddings[:, :0],
            n_actions,
            use_text=config.use_text,
            use_ids=config.use_ids is not False,  # None: no domain chose, on
            dropout=config.dropout,
            item_features=features,
            similarity=config.similarity,
            temperature=config.temperature,
            text_projection="adaptor" if config.tuning == "adaptor" else "linear",
            adaptor_experts=config.adaptor_experts,
            scale_ids=config.scale_ids is not False,  # None: no domain chose, on
            repeat_aware=bool(config.repeat_aware),
        )
    except ValueError as exc:
        raise InvalidArgument(f"config: {exc}") from exc
    if config.ids_from_text:
        _ids_from_text(model, text_embeddings)
    if config.id_dropout:
        if not 0 < config.id_dropout < 1 or not (model.use_text and model.use_ids):
            raise InvalidArgument(
                f"config.id_dropout: {config.id_dropout}; must be between 0 and 1, for a model of text and ids"
            )
        model.id_dropout = config.id_dropout
    return model


def start_from(model: SequenceRecommender, path: str, head_cls: type[Head], catalog: Catalog) -> None:
    """Load the weights of the artifact at ``path`` (``TrainConfig.init_from``) into
    ``model``, a model of the same head and shape over ``catalog``."""
    named = f"config.init_from: {path}"
    try:
        loaded = load_model(path, {head_cls.name: head_cls})
    except FailedPrecondition as exc:
        raise InvalidArgument(f"{named}: {exc}") from exc
    if loaded.manifest.tuned_encoder or loaded.manifest.item_table:
        raise InvalidArgument(
            f"{named}: a {'tuned' if loaded.manifest.tuned_encoder else 'compact'} artifact; start from one "
            "trained with a frozen encoder or an adaptor (its text embeddings and weights as trained)"
        )
    if loaded.catalog.item_ids != catalog.item_ids:
        raise InvalidArgument(
            f"{named}: its catalog ({len(loaded.catalog)} items) is not the data's ({len(catalog)} items, "
            "after the k-core): train it on the same data"
        )
    try:
        model.load_state_dict(loaded.model.state_dict())
    except RuntimeError as exc:  # another shape: dim, ids, features, repeats, head options
        lines = str(exc).splitlines()  # "Error(s) in loading state_dict ...", then what differs
        raise InvalidArgument(f"{named}: its weights do not fit this run's model ({lines[-1].strip()})") from exc


def _ids_from_text(model: SequenceRecommender, text_embeddings: torch.Tensor) -> None:
    """Start the id table at the text embeddings' principal components (LLM2BERT4Rec,
    Harte et al., RecSys'23): items that read alike start close, at the scale of a random
    start. An item without a training event keeps this start (``_train_only_seen_ids``)."""
    if model.item_ids is None or text_embeddings.shape[1] == 0:
        raise InvalidArgument("config.ids_from_text: needs id embeddings (use_ids) and the items' text embeddings")
    dim = model.item_ids.embedding_dim
    centred = text_embeddings.float() - text_embeddings.float().mean(0)
    _, _, basis = torch.pca_lowrank(centred, q=min(dim, *centred.shape), center=False)
    components = centred @ basis
    start = torch.zeros(len(components), dim)
    scale = 1 / dim if model.scale_ids else 1 / math.sqrt(dim)  # a random start's
    start[:, : components.shape[1]] = components / components.std().clamp(min=1e-12) * scale
    with torch.no_grad():
        model.item_ids.weight.copy_(start)


def _train_only_seen_ids(model: SequenceRecommender, unseen: torch.Tensor) -> None:
    """Keep the id embeddings of the ``unseen`` catalog items (a bool mask: no training
    event) where they start.

    The full softmax scores every catalog item at every step, so it would train the id
    embedding of an item it never sees as a target to score low: beside text, that id
    embedding (which starts at zero) would bury the item for good. Masking its gradient
    keeps it at zero, so the item is scored by its text alone, like an item added later.
    """
    if model.item_ids is not None and unseen.any():
        unseen = unseen.to(model.item_ids.weight.device).unsqueeze(1)
        model.item_ids.weight.register_hook(lambda grad: grad.masked_fill(unseen, 0.0))


def _fit(
    model: SequenceRecommender,
    seqs: Sequences,
    examples: TrainingExamples,
    checkpoint: Checkpoint,
    config: TrainConfig,
    on_epoch: EpochCallback | None,
    target_weights: torch.Tensor | None = None,
    tuning: TextTuning | None = None,
    ranks: Ranks | None = None,
    softmax_rows: torch.Tensor | None = None,
) -> Progress:
    """Train epochs (from the checkpoint, if any) until ``config.epochs``, early stop or
    the time budget, and leave the best epoch's weights in ``model``. An epoch cut short
    by the budget is validated and checkpointed like any other, and is the last. With
    several ``ranks`` (``distributed``), each trains on its share of every batch, they
    agree on rank 0's scores and clock, and rank 0 alone reads and writes checkpoints.
    ``softmax_rows``: the catalog rows the loss ranks targets among (all when None)."""
    ranks = ranks or Ranks(next(model.parameters()).device)
    softmax_rows = None if softmax_rows is None else softmax_rows.to(ranks.device)
    optimizer = torch.optim.AdamW(parameter_groups(model, config))
    progress, best = checkpoint.restore(model, optimizer, ranks.from_main(checkpoint.read))
    if config.init_from and progress.epoch == 0:  # a warm start: as it is, it competes with every epoch
        progress.best_score, _ = ranks.agree(validation_score(model, seqs, config)[1], 0.0)
    ranks.same_start(model)
    started = time.monotonic() - progress.seconds  # the clock of the whole run, resumed parts included
    budget = config.time_budget_s if config.time_budget_s > 0 else math.inf
    deadline = started + budget  # an epoch still running then ends after its current step
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    schedule = Schedule(
        config.lr, config.warmup_steps, config.schedule == "cosine", config.epochs * steps_per_epoch, started, budget
    )
    fastest = math.inf  # this process's fastest epoch, in seconds
    while progress.epoch < config.epochs and progress.stale < config.patience and progress.seconds < budget:
        progress.epoch += 1
        ranks.seed(config.seed, progress.epoch)
        epoch_started = time.monotonic()
        loss = _train_epoch(
            model,
            optimizer,
            examples,
            config,
            progress,
            ranks,
            deadline,
            target_weights,
            schedule,
            tuning,
            softmax_rows,
        )
        if tuning:
            tuning.refresh()  # validation and the next epoch read the tuned encoder's vectors
        measure, score = validation_score(model, seqs, config)
        score, progress.seconds = ranks.agree(score, time.monotonic() - started)
        seconds = time.monotonic() - epoch_started
        warning = slow_epoch_warning(progress.epoch, seconds, fastest, torch.get_num_threads())
        if warning:
            log.warning(warning)
        fastest = min(fastest, seconds)
        progress.losses.append(loss)
        progress.scores.append(score)
        if score > progress.best_score:
            progress.best_epoch, progress.best_score, progress.stale = progress.epoch, score, 0
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            progress.stale += 1
        log.info(
            "epoch %d: loss %.4f, valid %s %.4f (best %.4f, epoch %d)",
            progress.epoch,
            loss,
            measure,
            score,
            progress.best_score,
            progress.best_epoch,
        )
        if ranks.main:
            checkpoint.save(model, optimizer, progress, best)
        if on_epoch:
            on_epoch(progress.epoch, {"loss": loss, f"valid.{measure}": score, "seconds": progress.seconds})
    ranks.report_weights(model)
    model.load_state_dict(best)
    return progress


def validation_score(model: SequenceRecommender, seqs: Sequences, config: TrainConfig) -> tuple[str, float]:
    """What early stopping follows, and its name: the validation targets' NDCG@10 over the
    catalog or, where they were chosen among items shown beside them and that choice is
    trained (``passed_over_weight``), their AUC against the passed-over items: what the
    run learns to rank is what picks its best epoch."""
    if config.passed_over_weight:
        choice = evaluate_choice(model, seqs, "valid", config.max_len, config.eval_batch_size)
        if choice is not None:
            return "choice_auc", choice
    return "ndcg@10", evaluate_model(model, seqs, "valid", config.max_len, config.eval_batch_size)["ndcg@10"]


SLOW_EPOCH = 4.0  # an epoch this many times slower than the fastest is worth a warning


def slow_epoch_warning(epoch: int, seconds: float, fastest: float, threads: int) -> str | None:
    """Why an epoch that took ``seconds`` is suspect, or None. Epochs do the same work, so
    one far slower than the fastest means the machine changed under the run: most often
    another process took a core, and torch's threads, which wait for each other at every
    operation, then slow down many times over (47x was seen on 2 cores)."""
    if seconds <= SLOW_EPOCH * fastest:
        return None
    advice = f"; with {threads} torch threads, try --threads 1" if threads > 1 else ""
    return (
        f"epoch {epoch} took {seconds:.1f} s, {seconds / fastest:.0f}x the fastest ({fastest:.1f} s): another "
        f"process may be using the cores{advice}"
    )


def default_threads() -> int:
    """Torch threads for training: one per core this process may use, but one. Torch's
    threads wait for each other at every operation, so a run that takes every core slows
    down as soon as another process takes one (2 threads on 2 cores: 2x slower with one
    core busy, where 1 thread was unaffected; benchmarks/RESULTS.md, section threads).
    Under torchrun, the processes on this machine share its cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // processes - 1)


def _check_inputs(dataset: Dataset, text_embeddings: torch.Tensor, config: TrainConfig) -> None:
    if text_embeddings.ndim != 2 or text_embeddings.shape[0] != len(dataset.catalog):
        shape, expected = tuple(text_embeddings.shape), (len(dataset.catalog), "dim")
        raise InvalidArgument(f"text_embeddings: shape {shape}; expected {expected}, one row per catalog item")
    if not (config.use_text or config.use_ids or config.item_features):
        raise InvalidArgument("config: use_text, use_ids and item_features are all off; items need one of them")
    for name in ("dim", "max_len", "epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise InvalidArgument(f"config.{name}: {getattr(config, name)}; must be at least 1")
    if config.min_interactions is not None and config.min_interactions < 0:
        raise InvalidArgument(
            f"config.min_interactions: {config.min_interactions}; must be at least 0 (0 keeps every event)"
        )
    if config.tuning not in TUNINGS:
        raise InvalidArgument(f"config.tuning: {config.tuning!r}; allowed: {allowed(TUNINGS)}")
    if config.tuning != "frozen" and not config.use_text:
        raise InvalidArgument(f"config.tuning: {config.tuning!r} tunes the text tower, which use_text off leaves out")
    check_tuning(config)
    if config.schedule not in SCHEDULES:
        raise InvalidArgument(f"config.schedule: {config.schedule!r}; allowed: {allowed(SCHEDULES)}")
    if config.passed_over_weight < 0:
        raise InvalidArgument(f"config.passed_over_weight: {config.passed_over_weight}; must be at least 0 (0: off)")
    if config.warmup_steps < 0:
        raise InvalidArgument(f"config.warmup_steps: {config.warmup_steps}; must be at least 0")


def _check_item_fields(dataset: Dataset, actions: list[str], config: TrainConfig) -> None:
    """The item features and target weights name what the data and the domain have."""
    for name in config.item_features:
        if name not in dataset.catalog.features:
            raise InvalidArgument(
                f"config.item_features: {name!r} is not a feature of {dataset.name}; "
                f"its features: {allowed(dataset.catalog.features)}"
            )
    for action, weight in config.target_weights.items():
        if action not in actions:
            raise InvalidArgument(f"config.target_weights: action {action!r}; allowed: {allowed(actions)}")
        if not 0 <= weight <= 1:
            raise InvalidArgument(f"config.target_weights[{action!r}]: {weight}; must be between 0 and 1")
    if config.use_text and not any(dataset.catalog.texts):
        raise InvalidArgument(f"{dataset.name}: no item has text; train on ids or features (use_text off, --no-text)")


def _train_epoch(
    model: SequenceRecommender,
    optimizer: torch.optim.Optimizer,
    examples: TrainingExamples,
    config: TrainConfig,
    progress: Progress,
    ranks: Ranks,
    deadline: float,
    target_weights: torch.Tensor | None,
    schedule: Schedule,
    tuning: TextTuning | None = None,
    softmax_rows: torch.Tensor | None = None,
) -> float:
    """One pass (epoch ``progress.epoch``) over the shuffled windows, cut short at
    ``deadline`` (a ``time.monotonic`` value); returns the mean loss and counts the steps in
    ``progress``. The shuffle depends only on (seed, epoch), so a resumed run sees the same
    batches. ``target_weights`` (per action index): the probability that a target of that
    action enters the loss. ``schedule``: the learning rate per step. ``ranks``: this
    process's share of each batch, and the step's gradients summed over the processes."""
    model.train()
    epoch = progress.epoch
    total, steps = 0.0, 0
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    batches = ranks.share(_batches(examples, config, epoch))
    shown = None if ranks.main else True  # tqdm's disable: rank 0 alone shows its bar
    with tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=shown, leave=False) as bar:
        for rows in bar:
            optimizer.zero_grad(set_to_none=True)
            loss, targets = _batch_loss(
                model, examples, rows, config, ranks.device, target_weights, tuning, softmax_rows
            )
            if loss is None and not ranks.several:
                continue
            if loss is not None:
                ranks.objective(loss, targets).backward()
            now = time.monotonic()
            value = loss.item() if loss is not None else 0.0
            step = ranks.step(parameters, targets, value, now >= deadline, now - schedule.started)
            if step.targets:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                for group in optimizer.param_groups:
                    group["lr"] = schedule(progress.steps, step.clock) * group["scale"]
                optimizer.step()
                progress.steps += 1
                total, steps = total + step.loss, steps + 1
                bar.set_postfix(loss=f"{total / steps:.4f}")
            if step.stop:
                log.info("time budget spent after %d of %d steps of epoch %d", steps, len(bar), epoch)
                break
    return total / max(steps, 1)


def _batch_loss(
    model: SequenceRecommender,
    examples: TrainingExamples,
    rows: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    target_weights: torch.Tensor | None,
    tuning: TextTuning | None,
    softmax_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, int]:
    """The loss of the windows ``rows`` (the head's auxiliary loss included) and the
    targets it counts; None when ``target_weights`` kept none of them."""
    batch, targets = examples.rows(rows)
    first = int(batch.mask.any(0).nonzero()[0])  # drop columns that are padding in every row
    batch = _columns(batch, first).to(device)
    targets = targets[:, first:].to(device)
    # The item tower runs once per step: its table feeds both the events and the loss.
    texts = tuning.step_texts(torch.cat([batch.items[batch.mask], targets[targets != IGNORE]])) if tuning else None
    table = model.item_vectors(texts=texts) if texts is not None or not config.negatives else None
    output = model(batch, table)
    known = targets != IGNORE
    if target_weights is not None:
        kept = target_weights.to(device)[examples.target_actions[rows][:, first:].to(device)]
        known &= torch.rand(known.shape, device=device) < kept
        if not known.any():
            return None, 0
    passed = examples.passed_over(rows) if config.passed_over_weight else None
    passed = None if passed is None else passed[:, first:].to(device)
    loss = _next_item_loss(model, output.states, targets, known, config, table, batch, passed, softmax_rows)
    if output.aux_loss is not None:
        loss = loss + output.aux_loss
    return loss, int(known.sum())


def _batches(examples: TrainingExamples, config: TrainConfig, epoch: int) -> list[torch.Tensor]:
    """The row indices of each batch of one epoch, shuffled by (seed, epoch).

    With ``length_buckets``, each group of ``BUCKET_GROUP`` batches' worth of shuffled
    windows is sorted by length before it is cut into batches, and the batches are then
    shuffled: batches hold windows of similar lengths, so trimming their all-padding
    columns leaves little padding for the head to process.
    """
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(examples), generator=generator)
    if config.length_buckets:
        lengths = examples.inputs.mask.sum(1)
        groups = order.split(config.batch_size * BUCKET_GROUP)
        order = torch.cat([group[torch.argsort(lengths[group], stable=True)] for group in groups])
    batches = list(order.split(config.batch_size))
    if config.length_buckets:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


def _columns(batch: EventBatch, first: int) -> EventBatch:
    return batch.map(lambda t: t[:, first:])


def _next_item_loss(
    model: SequenceRecommender,
    states: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor,
    config: TrainConfig,
    table: torch.Tensor | None,
    batch: EventBatch,
    passed: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each ``known`` target of the (B, L) grid after ``batch``'s events
    against the catalog (``table``: its item vectors, computed when None; ``rows``: only
    those catalog rows, when given), or against ``config.negatives`` items sampled from it
    (see ``losses``); plus, ``config.passed_over_weight`` times, against its ``passed``
    items ((B, L, K), the ones shown beside it and not chosen)."""
    states = model.scoring_states(states)
    bonus = model.repeat_bonus(states, batch)
    states, targets = states[known], targets[known]
    bonus = None if bonus is None else (bonus[0][known], bonus[1][known])
    candidates = model.candidate_vectors if table is None else lambda index: model.scoring_items(table[index])
    if config.negatives:
        loss = sampled_softmax_cross_entropy(states, targets, candidates, model.n_items, config.negatives, bonus, rows)
    else:
        items = model.scoring_items(model.item_vectors() if table is None else table)
        loss = full_softmax_cross_entropy(states, *_among(rows, items, targets, bonus))
    chosen = None if passed is None else passed_over_cross_entropy(states, targets, passed[known], candidates, bonus)
    return loss if chosen is None else loss + config.passed_over_weight * chosen


def _among(rows: torch.Tensor | None, items: torch.Tensor, targets: torch.Tensor, bonus):
    """(items, targets, bonus) of a softmax over the catalog ``rows`` alone (all when
    None): their vectors, and the targets' and bonus columns' places among them."""
    if rows is None:
        return items, targets, bonus
    place = torch.full((len(items),), -1, dtype=torch.long, device=items.device)
    place[rows] = torch.arange(len(rows), device=items.device)
    bonus = None if bonus is None else columns(*bonus, rows, len(rows))
    return items[rows], place[targets], bonus


def _run_key(
    fingerprint: str,
    head_cls,
    text_embeddings: torch.Tensor,
    domain,
    actions: list[str],
    encoder_model_id: str,
    config: TrainConfig,
) -> str:
    """Identifies a training run: equal keys mean a checkpoint can be resumed."""
    digest = hashlib.sha256()
    described = {
        "config": config.key_fields(),
        "head": head_cls.name,
        "domain": domain.name,
        "actions": actions,
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
        with replaced_atomically(self.path) as partial:
            torch.save(state, partial)

    def read(self) -> dict | None:
        """The saved state (on the CPU), or None when this run has no checkpoint."""
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def restore(self, model, optimizer, state: dict | None) -> tuple[Progress, dict[str, torch.Tensor]]:
        """Load a checkpoint's ``state`` (``read``) into ``model`` and ``optimizer``, if there
        is one; returns the progress and the best weights so far (the initial ones when new)."""
        if state is None:
            return Progress(), {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
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
