"""Training that tunes the language model (``TrainConfig.tuning`` "lora" or "top").

The encoder trains jointly with the head on the next-item loss. Encoding the whole catalog
at every step would cost far more than the head, so, as Recformer does, the catalog's text
vectors are a cache: every step re-encodes, with gradients, the texts of the items the step
uses (its inputs and targets; at most ``tuned_items_per_step`` of them) and takes the rest
from the cache, and the whole cache is re-encoded after every epoch, before validation. At
the end the adapters are merged and the cache re-encoded by the merged model, so the saved
text vectors are exactly what the saved encoder gives.
"""

from __future__ import annotations

import logging

import torch

from temporec.contract.encoders import Encoder
from temporec.contract.errors import InvalidArgument, allowed
from temporec.contract.training import TrainConfig
from temporec.model.artifacts import ENCODER_DIR, Manifest
from temporec.model.recommender import SequenceRecommender
from temporec.model.tuned_encoder import Tokens, TunedEncoder

log = logging.getLogger(__name__)

TUNES_ENCODER = ("lora", "top")  # the ``tuning`` modes that train the language model itself


def tuned_encoder(encoder: Encoder, config: TrainConfig) -> TunedEncoder:
    """A trainable copy of ``encoder``'s language model, set up as ``config.tuning`` says."""
    if not (encoder.exportable and encoder.source):
        raise InvalidArgument(
            f"config.tuning: {config.tuning!r} trains the language model, which encoder {encoder.name!r} does "
            "not run in this process; train with an encoder that does (local)"
        )
    tuned = TunedEncoder.load(encoder.source, config.text_max_length)
    if config.encoder_layers:
        tuned.keep_first_layers(config.encoder_layers)
    if config.gradient_checkpointing:
        tuned.checkpoint_gradients()
    if config.tuning == "lora":
        return tuned.with_lora(config.lora_rank, config.lora_alpha, config.lora_targets, config.dropout)
    return tuned.with_top_layers(config.top_layers)


def check_tuning(config: TrainConfig) -> None:
    """What every trainer checks of the tuning options beyond the mode's name, and of the
    learning rates (the encoder's group keeps its rate as a multiple of ``lr``)."""
    if not config.lr > 0:  # "not": NaN fails too
        raise InvalidArgument(f"config.lr: {config.lr}; must be above 0")
    if not config.encoder_lr >= 0:
        raise InvalidArgument(f"config.encoder_lr: {config.encoder_lr}; must be at least 0")
    if config.encoder_layers < 0:
        raise InvalidArgument(f"config.encoder_layers: {config.encoder_layers}; must be at least 0 (0: all)")
    if config.encoder_layers and config.tuning not in TUNES_ENCODER:
        raise InvalidArgument(
            f"config.encoder_layers: cuts the language model, which only the tunings {allowed(TUNES_ENCODER)} "
            f"train and save with the model; tuning is {config.tuning!r}"
        )


class TunedTexts:
    """Texts tokenized once for the encoder being tuned: rows re-encoded with gradients
    for a step, or all of them encoded at once (in eval mode, without gradients)."""

    def __init__(self, encoder: TunedEncoder, texts: list[str]):
        self.encoder = encoder  # the same object after ``merge_adapters``: it swaps its inner model
        self.tokens: Tokens = encoder.tokenize(texts)

    def __len__(self) -> int:
        return len(self.tokens.ids)

    def fresh(self, rows: torch.Tensor) -> torch.Tensor:
        """(len(rows), dim) vectors of texts ``rows``, with gradients."""
        return self.encoder(self.tokens.rows(rows))

    def embed_all(self) -> torch.Tensor:
        return self.encoder.embed(self.tokens)


class TextTuning:
    """The catalog's texts tokenized once, and the step and epoch re-encodings."""

    def __init__(self, model: SequenceRecommender, texts: list[str], per_step: int):
        if model.text_encoder is None:
            raise ValueError("the model has no text encoder to tune")
        if per_step < 1:
            raise InvalidArgument(f"config.tuned_items_per_step: {per_step}; must be at least 1")
        self.model, self.per_step = model, per_step
        self.texts = TunedTexts(model.text_encoder, texts)

    @property
    def encoder(self) -> TunedEncoder:
        return self.model.text_encoder

    def refresh(self) -> None:
        """Re-encode the whole catalog into the model's stored text vectors."""
        vectors = self.texts.embed_all()
        self.model.text_embeddings.copy_(vectors.to(self.model.text_embeddings.device))

    def step_texts(self, items: torch.Tensor) -> torch.Tensor:
        """The catalog's text vectors for one step: ``items`` (catalog indices the step
        uses; a random ``per_step`` of them when more) freshly encoded, with gradients."""
        items = torch.unique(items.cpu())
        if len(items) > self.per_step:
            items = items[torch.randperm(len(items))[: self.per_step]]
        fresh = self.texts.fresh(items)
        table = self.model.text_embeddings
        return table.index_put((items.to(table.device),), fresh.to(table.dtype))

    def finish(self) -> None:
        """Merge the adapters and re-encode the catalog with the merged model."""
        self.encoder.merge_adapters()
        self.refresh()


def record_tuning(manifest: Manifest, config: TrainConfig) -> None:
    """Mark ``manifest`` as a model that tuned its language model (saved in ``ENCODER_DIR``
    by ``save_model``): its text vectors are the tuned encoder's, in a space of their own,
    which the server embeds new texts in by running that encoder."""
    manifest.encoder_model_id = f"{manifest.encoder_model_id}+{config.tuning}"
    manifest.tuned_encoder = {"model": ENCODER_DIR, "max_length": config.text_max_length, "tuning": config.tuning}


def parameter_groups(model: SequenceRecommender, config: TrainConfig) -> list[dict]:
    """The optimiser's groups: the encoder's trainable weights at their own rate and decay.
    ``scale`` keeps each group's rate in proportion as the schedule changes the base rate."""
    tuned = [] if model.text_encoder is None else model.text_encoder.trainable_parameters()
    ids = {id(p) for p in tuned}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr": config.lr, "weight_decay": config.weight_decay, "scale": 1.0}]
    if tuned:
        groups.append(
            {
                "params": tuned,
                "lr": config.encoder_lr,
                "weight_decay": config.encoder_weight_decay,
                "scale": config.encoder_lr / config.lr,
            }
        )
    return groups
