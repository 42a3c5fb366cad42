"""What a domain receives and returns when ``temporec train`` and ``temporec eval`` call it.

``Domain.train(request)`` and ``Domain.evaluate(request)`` each take one request object.
Besides the user's choices, a request carries the standard procedure that temporec's
training layer provides (``fit``, ``leave_one_out``): the default ``Domain`` methods call
it, and a domain that reads its data its own way can call it on the ``Dataset`` it built.
The contract names these procedures but does not import them, so the plugin contract
stays below the training layer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporec.contract.encoders import Encoder
from temporec.contract.types import Dataset

if TYPE_CHECKING:  # annotations only: the model layer sits above the contract
    from temporec.contract.heads import Head
    from temporec.model.artifacts import LoadedModel


@dataclass
class TrainConfig:
    dim: int = 64
    max_len: int = 50
    # A safety cap: the time budget and validation decide when training ends (on a sparse shop
    # log, 20 epochs with patience 3 stopped before the model learnt anything: benchmarks/RESULTS.md).
    epochs: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "constant"  # or "cosine": decay to 0 over the run (``Schedule``)
    warmup_steps: int = 0  # optimizer steps of linear warm-up to ``lr``
    dropout: float = 0.2
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    seed: int = 0
    use_text: bool = True
    use_ids: bool | None = None  # id embeddings; None: the domain decides (retail: where items recur), else on
    head_options: dict[str, Any] = field(default_factory=dict)
    # None: the domain decides (full softmax unless its ``training_config`` says otherwise);
    # 0: full softmax over the catalog; N: N sampled negatives per batch
    negatives: int | None = None
    # Whether catalog items without an event in the data are negatives of the loss too. Off:
    # the softmax (and the sampled negatives) run over the items the data has, as a catalog of
    # those items alone would: an item no one has seen yet (a new one, a cold-start test's) is
    # neither a target nor pushed down as a negative, and is scored by its text when it comes.
    unseen_negatives: bool = False
    # The k-core kept before training: items, then users, with fewer events are dropped until
    # none is left. None: the domain decides (5 for video, as the sequential benchmarks do; else
    # none); 0: every event is kept. ``temporec eval`` filters the same way.
    min_interactions: int | None = None
    # How the language model's knowledge is tuned to the users (docs/encoders.md): "frozen"
    # (a linear projection of fixed text embeddings), "adaptor" (a mixture of
    # ``adaptor_experts`` whitening experts over them, UniSRec's), "lora" (low-rank adapters
    # on the encoder's ``lora_targets`` layers) or "top" (its top ``top_layers`` layers).
    # The last two train the encoder itself, at ``encoder_lr``, on texts cut to
    # ``text_max_length`` tokens, re-encoding ``tuned_items_per_step`` of the step's items.
    tuning: str = "frozen"
    adaptor_experts: int = 8
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])
    top_layers: int = 1
    # Keep only the language model's first ``encoder_layers`` layers (0: all) before tuning
    # it: a shallower model, about proportionally faster to run (lora and top, whose
    # artifacts carry the encoder so cut).
    encoder_layers: int = 0
    encoder_lr: float = 1e-4
    encoder_weight_decay: float = 0.01
    text_max_length: int = 64
    tuned_items_per_step: int = 64  # sized for a CPU: a GPU takes 512 as easily
    # Recompute the encoder's activations in the backward pass instead of keeping them: less
    # memory (larger models, more tuned items per step on a GPU) for about a third more time.
    gradient_checkpointing: bool = False
    # Start each id embedding from its item's projected text (LLM2BERT4Rec) instead of zero
    # (beside text) or noise (ids only).
    ids_from_text: bool = False
    # The share of item vectors that a training step takes without their id embedding (text
    # and ids models): the model learns to score an item by its text alone, as it must one
    # that arrives after training (DropoutNet, Volkovs et al. 2017). 0: off.
    id_dropout: float = 0.0
    # An artifact (its directory) to start from: a model of the same head, shape and catalog,
    # trained with a frozen encoder or an adaptor. Its weights load before the first epoch and
    # compete with every epoch for the best; the language model starts from the encoder as
    # given. Two stages on a CPU: the frozen model converges in minutes, then a tuning run
    # from it spends its few epochs on the texts, not on the head.
    init_from: str = ""
    # Id embeddings start at std 1/dim and enter the events times sqrt(dim), as Transformers
    # embed tokens; off: std 1/sqrt(dim), unscaled (0.1's models). None: the domain decides
    # (retail: off, where the plain heads lose to it; else on).
    scale_ids: bool | None = None
    # The items of the user's own history get a learned bonus for their recency, frequency and
    # actions, gated by the head's state (temporec.model.repeats): shoppers come back. None:
    # the domain decides (retail: on; else off).
    repeat_aware: bool | None = None
    similarity: str = "dot"  # "dot" or "cosine" (temporec.model.recommender.SIMILARITIES)
    temperature: float = 1.0  # divides cosine scores; 0.05 is HSTU's
    grad_clip: float = 5.0
    eval_batch_size: int = 256
    device: str = ""  # empty or "auto": CUDA when present, else the CPU
    time_budget_s: float = 600.0  # > 0: stop training (mid-epoch) once this many seconds are spent; 0: no limit
    threads: int = 0  # CPU threads for torch; 0: one per available core but one (``default_threads``)
    # Batch windows of similar lengths together: less padding, faster epochs on data of mixed
    # lengths, but batches unlike the data; on a shop log of short histories it cost 10% of
    # HR@10 (benchmarks/RESULTS.md, sasrec-gap), so it is for long-history data in a hurry.
    length_buckets: bool = False
    item_features: list[str] = field(default_factory=list)  # categorical catalog features to embed
    # action -> weight in [0, 1] of its events as targets (others 1): each such target enters
    # a step's loss with that probability, an unbiased weighting that suits every loss
    target_weights: dict[str, float] = field(default_factory=dict)
    # Weight of a second loss for the targets shown beside items the user passed over
    # (``Event.passed_over``: an impression's unclicked articles): each is ranked against those
    # items alone, as news recommenders train on impressions (NRMS). It teaches what makes one
    # shown item chosen over another, which the catalog-wide loss does not; 0: off. None: the
    # domain decides (news: 20; else 1).
    passed_over_weight: float | None = None

    def key_fields(self) -> dict[str, Any]:
        """What determines each epoch's weights: not the device, nor how long a run may
        last (a killed run can be resumed with more epochs or time)."""
        lasting = ("device", "eval_batch_size", "epochs", "patience", "time_budget_s", "threads")
        return {k: v for k, v in asdict(self).items() if k not in lasting}


@dataclass
class Report:
    """What ``evaluate_artifact`` measured, and on what."""

    model: str
    head: str
    data: str
    data_fingerprint: str
    same_data_as_training: bool
    users: int
    dropped_events: int  # events whose items the model's catalog lacks
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class TrainRequest:
    """``temporec train``: train ``head`` for a domain on the data at ``data``."""

    data: str
    head: type[Head]
    encoder: Encoder  # embeds the item texts (through the cache in ``cache_dir``)
    config: TrainConfig
    out_dir: Path
    #: the standard next-item training of ``head`` on a dataset read by the domain, with
    #: the given settings; returns the saved artifact's directory
    fit: Callable[[Dataset, TrainConfig], Path]
    cache_dir: str | os.PathLike | None = None


@dataclass
class EvalRequest:
    """``temporec eval``: measure ``model``, trained for a domain, on the data at ``data``."""

    model: LoadedModel
    data: str
    #: the model's encoder, started on the first call (that takes seconds): call it only to
    #: embed texts the model does not hold
    open_encoder: Callable[[], Encoder]
    #: the standard leave-one-out evaluation of ``model`` on a dataset, with the popularity
    #: baseline side by side (each user's last event the test, the one before it the
    #: validation target)
    leave_one_out: Callable[[Dataset], Report]
    batch_size: int = 256  # users per matmul
    cache_dir: str | os.PathLike | None = None
    #: for a model that tuned its language model (``Manifest.tuned_encoder``; ``open_encoder``
    #: then gives the tuned one): the encoder its tuning started from, for the baselines that
    #: read the frozen encoder; None: ``open_encoder`` (nothing was tuned)
    open_base_encoder: Callable[[], Encoder] | None = None
