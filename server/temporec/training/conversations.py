"""Training on conversations: the history is a chat so far (turns known by their text),
the target the right reply (a catalog item: an FAQ answer, a reply template, a class).
Customer service trains with it, and finance (a sentence is a one-turn conversation, its
label the reply).

The next-item trainer (``temporec.training.next_item``) needs every event in the catalog;
here user and agent turns are text, fed to the model as events outside the catalog,
exactly as the service feeds a request's text events. Each conversation is one example;
with several right replies its loss is the mean of ``-log p(reply)`` over them, which
lifts every right reply (P@K counts them all), not only the easiest. AdamW, early
stopping on validation MRR and the time budget (checked after every step); the best
weights are saved as an ordinary artifact, which the service loads and serves like any
other.

How the turns are embedded follows ``TrainConfig.tuning``. ``frozen`` and ``adaptor``:
once, by the frozen encoder (cached like catalog texts). ``lora`` and ``top``: the
language model trains with the head (``temporec.training.encoder_tuning``). Every step
re-encodes, with gradients, all of its batch's turn texts and the replies it uses (at
most ``tuned_items_per_step``, the others from the cache); validation re-encodes the
validation turns and every reply with the current encoder after each epoch. At the end
the adapters are merged and the artifact carries the tuned encoder, which the server
then runs to embed a request's turns (``Manifest.tuned_encoder``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from temporec.contract.domains import Domain, check_compatible
from temporec.contract.encoders import Encoder
from temporec.contract.errors import InvalidArgument, allowed
from temporec.contract.heads import Head
from temporec.contract.training import TrainConfig, TrainRequest
from temporec.contract.types import Catalog
from temporec.data.conversations import Conversation, ConversationData
from temporec.model.artifacts import save_model
from temporec.model.embedding_cache import catalog_embeddings
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.model.tuned_encoder import TunedEncoder
from temporec.training.distributed import Ranks, joined
from temporec.training.encoder_tuning import (
    TUNES_ENCODER,
    TextTuning,
    TunedTexts,
    check_tuning,
    parameter_groups,
    record_tuning,
    tuned_encoder,
)
from temporec.training.next_item import BUCKET_GROUP, TUNINGS, build_model, start_from, training_manifest
from temporec.training.protocols import ReplyCase, TextVectors, evaluate_replies, model_scorer

log = logging.getLogger(__name__)


def embed_texts(
    encoder: Encoder, texts: list[str], cache_dir: str | os.PathLike | None = None
) -> dict[str, torch.Tensor]:
    """Each distinct text's embedding, through the catalog embedding cache."""
    unique = sorted(set(texts))
    if not unique:
        return {}
    pseudo = Catalog([str(i) for i in range(len(unique))], unique)
    vectors = catalog_embeddings(encoder, pseudo, cache_dir=cache_dir)
    return dict(zip(unique, vectors))


def turn_texts(data: ConversationData) -> list[str]:
    """Every turn text of every split (the texts events outside the catalog carry)."""
    return [e.text for split in (data.train, data.valid, data.test) for c in split for e in c.turns if e.text]


def reply_cases(conversations: list[Conversation]) -> list[ReplyCase]:
    return [ReplyCase(c.turns, c.replies) for c in conversations]


def fit_conversations(request: TrainRequest, data: ConversationData, domain: Domain) -> Path:
    """``Domain.train`` on conversations ``data`` (read from ``request.data``): reply and
    turn texts are embedded once by the request's encoder (cached), or by the language
    model that ``tuning`` "lora" or "top" trains with the head (``tuned_encoder``)."""
    encoder, cache_dir, config = request.encoder, request.cache_dir, request.config
    text_encoder, turns = None, None
    if config.tuning in TUNES_ENCODER:  # the tuned encoder embeds replies and turns as it learns
        text_encoder = tuned_encoder(encoder, config)
        replies = torch.zeros(len(data.catalog), text_encoder.dim)
    else:
        replies = catalog_embeddings(encoder, data.catalog, cache_dir=cache_dir)
        turns = embed_texts(encoder, turn_texts(data), cache_dir).__getitem__
    return train_conversations(
        data,
        request.head,
        replies,
        turns,
        domain=domain,
        encoder_name=encoder.name,
        encoder_model_id=encoder.model_id,
        out_dir=request.out_dir,
        config=config,
        text_encoder=text_encoder,
    )


def train_conversations(
    data: ConversationData,
    head_cls: type[Head],
    item_embeddings: torch.Tensor,
    text_vectors: TextVectors | None,
    *,
    domain: type[Domain] | Domain,
    encoder_name: str,
    encoder_model_id: str,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    text_encoder: TunedEncoder | None = None,
) -> Path:
    """Train ``head_cls`` to propose ``data``'s right replies and save the model under
    ``out_dir``; returns the artifact directory. ``item_embeddings`` are the catalog's
    text embeddings; ``text_vectors(text)`` embeds a turn (see ``embed_texts``).
    ``text_encoder``: the language model to tune when ``config.tuning`` trains it
    (``temporec.training.tuned_encoder``); it then embeds the replies and the turns, and
    ``item_embeddings`` and ``text_vectors`` are not read."""
    check_compatible(head_cls, domain)
    config = config or TrainConfig()
    _check_config(data, config, text_vectors, text_encoder)
    if config.threads:
        torch.set_num_threads(config.threads)
    with joined(config.device) as ranks:
        actions = list(domain.actions)  # the conversation roles
        model = build_model(head_cls, item_embeddings, len(actions), config)
        if config.init_from:
            start_from(model, config.init_from, head_cls, data.catalog)
        tuning = _reply_tuning(model, text_encoder, data.catalog, config)
        model.to(ranks.device)
        encoder = model.text_encoder if tuning else None
        train_turns = TurnTexts(data.train, data.catalog, text_vectors, encoder)
        valid_turns = TurnTexts(data.valid, data.catalog, text_vectors, encoder)
        examples = _examples(data.train, data.catalog, actions, config.max_len, train_turns)
        popularity = examples.targets.sum(0).float()
        valid = reply_cases(data.valid)

        def validate() -> float:
            if tuning:  # the current encoder's vectors, as a server would compute them
                tuning.refresh()
                valid_turns.refresh()
            scorer = model_scorer(model, data.catalog, actions, config.max_len, popularity, valid_turns.vector)
            return evaluate_replies({"model": scorer}, valid, data.catalog)["model"]["mrr"]

        best_epoch, best_score, stale = 0, -1.0, 0
        if config.init_from:  # a warm start: as it is, it competes with every epoch
            best_score, _ = ranks.agree(validate(), 0.0)
        ranks.same_start(model)
        best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        optimizer = torch.optim.AdamW(parameter_groups(model, config))
        deadline = time.monotonic() + config.time_budget_s if config.time_budget_s > 0 else math.inf
        for epoch in range(1, config.epochs + 1):
            ranks.seed(config.seed, epoch)
            loss = _train_epoch(model, optimizer, examples, train_turns, tuning, config, epoch, ranks, deadline)
            score, late = ranks.agree(validate(), float(time.monotonic() >= deadline))  # rank 0's, everywhere
            log.info("epoch %d: loss %.4f, valid MRR %.4f", epoch, loss, score)
            if score > best_score:
                best_epoch, best_score, stale = epoch, score, 0
                best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            if stale >= config.patience or late:
                break
        ranks.report_weights(model)
        model.load_state_dict(best)

        def save() -> Path:  # the best weights, tested and saved (by rank 0 alone)
            if tuning:
                tuning.finish()  # adapters merged, replies re-encoded: exactly what the saved encoder gives
            test_turns = TurnTexts(data.test, data.catalog, text_vectors, encoder)
            test_turns.refresh()
            scorer = model_scorer(model, data.catalog, actions, config.max_len, popularity, test_turns.vector)
            tested = evaluate_replies({"m": scorer}, reply_cases(data.test), data.catalog)["m"]
            metrics = {f"test.{k}": v for k, v in tested.items()}
            metrics.update({"valid.mrr": best_score, "best_epoch": float(best_epoch), "epochs": float(epoch)})
            manifest = training_manifest(
                model,
                config,
                domain,
                encoder_name,
                encoder_model_id,
                actions,
                data.name,
                data.as_dataset().fingerprint(),
                metrics,
            )
            if tuning:
                record_tuning(manifest, config)
            return save_model(out_dir, manifest, model.cpu(), data.catalog, popularity)

        return ranks.from_main(save)


def _check_config(
    data: ConversationData, config: TrainConfig, text_vectors: TextVectors | None, text_encoder: TunedEncoder | None
) -> None:
    if not config.use_text:
        raise InvalidArgument("config.use_text: conversations are text; a model without a text tower cannot read them")
    if config.tuning not in TUNINGS:
        raise InvalidArgument(f"config.tuning: {config.tuning!r}; allowed: {allowed(TUNINGS)}")
    check_tuning(config)
    if config.tuning in TUNES_ENCODER and text_encoder is None:
        raise InvalidArgument(f"config.tuning: {config.tuning!r} needs the language model to tune (text_encoder)")
    if config.tuning not in TUNES_ENCODER and text_vectors is None:
        raise InvalidArgument(f"config.tuning: {config.tuning!r} embeds the turns once: give text_vectors")
    if not (data.train and data.valid):
        raise InvalidArgument(f"{data.name}: training needs train and valid conversations")


def _reply_tuning(
    model: SequenceRecommender, text_encoder: TunedEncoder | None, catalog: Catalog, config: TrainConfig
) -> TextTuning | None:
    """What tunes the language model on the replies' texts, attached to ``model``; None
    when ``config.tuning`` leaves the encoder frozen."""
    if config.tuning not in TUNES_ENCODER:
        return None
    if text_encoder.dim != model.text_embeddings.shape[1]:
        raise InvalidArgument(
            f"text_encoder: width {text_encoder.dim}, the reply embeddings' {model.text_embeddings.shape[1]}"
        )
    model.text_encoder = text_encoder
    tuning = TextTuning(model, catalog.texts, config.tuned_items_per_step)
    tuning.refresh()  # at the tuned encoder's text length, as every later refresh
    return tuning


class TurnTexts:
    """The distinct texts of some conversations' turns outside the catalog, and their
    vectors: the frozen encoder's (``text_vectors``), or the tuned ``encoder``'s: fresh,
    with gradients, in a training step, and re-encoded all at once by ``refresh``."""

    def __init__(
        self,
        conversations: list[Conversation],
        catalog: Catalog,
        text_vectors: TextVectors | None,
        encoder: TunedEncoder | None = None,
    ):
        outside = (e.text for c in conversations for e in c.turns if e.item_id not in catalog.index)
        self.texts = sorted(set(outside))
        self.row = {text: i for i, text in enumerate(self.texts)}
        self.tuned = TunedTexts(encoder, self.texts) if encoder is not None and self.texts else None
        self.table = (
            None if encoder is not None or not self.texts else torch.stack([text_vectors(t) for t in self.texts])
        )

    def refresh(self) -> None:
        """Re-encode every text with the tuned encoder as it is now (nothing when frozen)."""
        if self.tuned is not None:
            self.table = self.tuned.embed_all()

    def vector(self, text: str) -> torch.Tensor:
        """A ``TextVectors``: the text's vector as last encoded."""
        return self.table[self.row[text]]

    def step(self, rows: torch.Tensor) -> torch.Tensor | None:
        """(B, L, E) vectors of a step's turns (``rows``: (B, L) indices into ``texts``,
        -1 where an event is no such turn), freshly encoded when tuning."""
        present = rows >= 0
        if not present.any():
            return None
        if self.tuned is None:
            return self.table[rows.clamp(min=0)] * present.unsqueeze(-1)
        unique, inverse = torch.unique(rows[present], return_inverse=True)
        fresh = self.tuned.fresh(unique)
        vectors = fresh.new_zeros(*rows.shape, fresh.shape[-1])
        return vectors.index_put((present,), fresh[inverse])


@dataclass
class Examples:
    """Training conversations as one left-padded batch (turns outside the catalog without
    vectors), where each such turn's text is (``turn_rows``: (n, L) rows of ``TurnTexts.texts``,
    -1 elsewhere), and the (n, n_items) bool right replies."""

    inputs: EventBatch
    turn_rows: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor  # (n,) characters of each conversation's turn texts (``length_buckets``)


def _examples(
    conversations: list[Conversation], catalog: Catalog, actions: list[str], max_len: int, turns: TurnTexts
) -> Examples:
    action_index = {name: i for i, name in enumerate(actions)}
    items = [[catalog.index.get(e.item_id, -1) for e in c.turns] for c in conversations]
    batch = EventBatch.from_histories(
        items,
        [[action_index.get(e.action, 0) for e in c.turns] for c in conversations],
        [[e.timestamp for e in c.turns] for c in conversations],
        max_len,
    )
    turn_rows = torch.full(batch.items.shape, -1, dtype=torch.long)
    width = batch.items.shape[1]
    for row, (indices, conversation) in enumerate(zip(items, conversations)):
        kept = list(zip(indices, conversation.turns))[-max_len:]  # as from_histories keeps them
        for t, (index, event) in enumerate(kept):
            if index < 0:
                turn_rows[row, width - len(kept) + t] = turns.row[event.text]
    targets = torch.zeros(len(conversations), len(catalog), dtype=torch.bool)
    for row, conversation in enumerate(conversations):
        targets[row, [catalog.index[r] for r in conversation.replies]] = True
    lengths = torch.tensor([sum(len(e.text) for e in c.turns[-max_len:]) for c in conversations])
    return Examples(batch, turn_rows, targets, lengths)


def _batches(examples: Examples, config: TrainConfig, epoch: int) -> list[torch.Tensor]:
    """The row indices of each batch of one epoch, shuffled by (seed, epoch). With
    ``length_buckets``, conversations of similar text lengths share a batch (each group of
    ``BUCKET_GROUP`` batches' worth sorted by length, the batches then shuffled): a tuned
    encoder pads each batch to its longest text, so this nearly halves its work on
    sentences of mixed lengths."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(examples.targets), generator=generator)
    if not config.length_buckets:
        return list(order.split(config.batch_size))
    groups = order.split(config.batch_size * BUCKET_GROUP)
    order = torch.cat([group[torch.argsort(examples.lengths[group], stable=True)] for group in groups])
    batches = list(order.split(config.batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def _rows(batch: EventBatch, index: torch.Tensor) -> EventBatch:
    return batch.map(lambda t: t[index])


def _train_epoch(
    model: SequenceRecommender,
    optimizer: torch.optim.Optimizer,
    examples: Examples,
    turns: TurnTexts,
    tuning: TextTuning | None,
    config: TrainConfig,
    epoch: int,
    ranks: Ranks,
    deadline: float,
) -> float:
    """One shuffled pass, cut short at ``deadline`` (``time.monotonic``); a conversation's
    loss is the mean ``-log p(reply)`` of its right replies. ``ranks``: this process's
    share of each batch, and the step's gradients summed over the processes."""
    model.train()
    losses = []
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    batches = ranks.share(_batches(examples, config, epoch))
    shown = None if ranks.main else True  # tqdm's disable: rank 0 alone shows its bar
    for rows in tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=shown, leave=False):
        loss = _batch_loss(model, examples, rows, turns, tuning, ranks.device)
        optimizer.zero_grad(set_to_none=True)
        ranks.objective(loss, len(rows)).backward()
        step = ranks.step(parameters, len(rows), loss.item(), time.monotonic() >= deadline, 0.0)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(step.loss)
        if step.stop:
            log.info("time budget spent after %d steps of epoch %d", len(losses), epoch)
            break
    return float(np.mean(losses))


def _batch_loss(
    model: SequenceRecommender,
    examples: Examples,
    rows: torch.Tensor,
    turns: TurnTexts,
    tuning: TextTuning | None,
    device: torch.device,
) -> torch.Tensor:
    """The mean loss of the conversations ``rows`` (the head's auxiliary loss included)."""
    batch, right = _rows(examples.inputs, rows).to(device), examples.targets[rows].to(device)
    texts = turns.step(examples.turn_rows[rows])
    batch.texts = None if texts is None else texts.to(device)
    table = None
    if tuning:  # the replies the step uses, freshly encoded: their gradients reach the encoder
        used = torch.cat([batch.items[batch.mask & (batch.items >= 0)], right.nonzero()[:, 1]])
        table = model.item_vectors(texts=tuning.step_texts(used))
    output = model(batch, table)
    states = model.scoring_states(output.states[:, -1])
    candidates = model.candidate_vectors() if table is None else model.scoring_items(table)
    log_p = model.score(states, candidates, batch).log_softmax(1)
    loss = -((log_p * right).sum(1) / right.sum(1)).mean()
    if output.aux_loss is not None:  # e.g. a VAE head's KL term
        loss = loss + output.aux_loss
    return loss
