"""Training on conversations: the history is a chat so far (turns known by their text),
the target the right reply (a catalog item: an FAQ answer, a reply template).

The next-item trainer (``temporec.training.next_item``) needs every event in the catalog;
here user and agent turns are text, embedded once by the encoder (cached like catalog
texts) and fed to the model as events outside the catalog, exactly as the service feeds
a request's text events. Each conversation is one example; with several right replies
its loss is the mean of ``-log p(reply)`` over them, which lifts every right reply (P@K
counts them all), not only the easiest. AdamW, early stopping on validation MRR (and the
time budget, checked after each epoch); the best weights are saved as an ordinary
artifact, which the service loads and serves like any other.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from temporec import Catalog, Domain, Encoder, Head, InvalidArgument, check_compatible
from temporec.model import (
    EventBatch,
    SequenceRecommender,
    catalog_embeddings,
    resolve_device,
    save_model,
)
from temporec.training import (
    ReplyCase,
    TextVectors,
    TrainConfig,
    build_model,
    evaluate_replies,
    model_scorer,
    training_manifest,
)
from temporec_plugins.domains.customer_service.reader import (
    Conversation,
    ConversationData,
)

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


def train_conversations(
    data: ConversationData,
    head_cls: type[Head],
    item_embeddings: torch.Tensor,
    text_vectors: TextVectors,
    *,
    domain: type[Domain] | Domain,
    encoder_name: str,
    encoder_model_id: str,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
) -> Path:
    """Train ``head_cls`` to propose ``data``'s right replies and save the model under
    ``out_dir``; returns the artifact directory. ``item_embeddings`` are the catalog's
    text embeddings; ``text_vectors(text)`` embeds a turn (see ``embed_texts``)."""
    check_compatible(head_cls, domain)
    config = config or TrainConfig()
    if not config.use_text:
        raise InvalidArgument("config.use_text: conversations are text; a model without a text tower cannot read them")
    if not (data.train and data.valid):
        raise InvalidArgument(f"{data.name}: training needs train and valid conversations")
    device = resolve_device(config.device)
    actions = list(domain.actions)  # the conversation roles
    model = build_model(head_cls, item_embeddings, len(actions), config).to(device)
    inputs, targets = _examples(data.train, data.catalog, actions, config.max_len, text_vectors)
    popularity = targets.sum(0).float()
    valid = reply_cases(data.valid)

    def validate() -> float:
        scorer = model_scorer(model, data.catalog, actions, config.max_len, popularity, text_vectors)
        return evaluate_replies({"model": scorer}, valid, data.catalog)["model"]["mrr"]

    best_epoch, best_score, stale = 0, -1.0, 0
    best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    deadline = time.monotonic() + config.time_budget_s if config.time_budget_s > 0 else math.inf
    for epoch in range(1, config.epochs + 1):
        loss = _train_epoch(model, optimizer, inputs, targets, config, epoch, device)
        score = validate()
        log.info("epoch %d: loss %.4f, valid MRR %.4f", epoch, loss, score)
        if score > best_score:
            best_epoch, best_score, stale = epoch, score, 0
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if stale >= config.patience or time.monotonic() >= deadline:
            break
    model.load_state_dict(best)
    scorer = model_scorer(model, data.catalog, actions, config.max_len, popularity, text_vectors)
    metrics = {
        f"test.{k}": v for k, v in evaluate_replies({"m": scorer}, reply_cases(data.test), data.catalog)["m"].items()
    }
    metrics.update({"valid.mrr": best_score, "best_epoch": float(best_epoch), "epochs": float(epoch)})
    dataset = data.as_dataset()
    manifest = training_manifest(
        model, config, domain, encoder_name, encoder_model_id, actions, data.name, dataset.fingerprint(), metrics
    )
    return save_model(out_dir, manifest, model.cpu(), data.catalog, popularity)


def _examples(
    conversations: list[Conversation], catalog: Catalog, actions: list[str], max_len: int, text_vectors: TextVectors
) -> tuple[EventBatch, torch.Tensor]:
    """All conversations as one left-padded batch, and (n, n_items) bool right replies."""
    action_index = {name: i for i, name in enumerate(actions)}
    items = [[catalog.index.get(e.item_id, -1) for e in c.turns] for c in conversations]
    texts = [
        [text_vectors(e.text) if i < 0 else None for i, e in zip(row, c.turns)] for row, c in zip(items, conversations)
    ]
    batch = EventBatch.from_histories(
        items,
        [[action_index.get(e.action, 0) for e in c.turns] for c in conversations],
        [[e.timestamp for e in c.turns] for c in conversations],
        max_len,
        texts,
    )
    targets = torch.zeros(len(conversations), len(catalog), dtype=torch.bool)
    for row, conversation in enumerate(conversations):
        targets[row, [catalog.index[r] for r in conversation.replies]] = True
    return batch, targets


def _rows(batch: EventBatch, index: torch.Tensor) -> EventBatch:
    return batch.map(lambda t: t[index])


def _train_epoch(
    model: SequenceRecommender,
    optimizer: torch.optim.Optimizer,
    inputs: EventBatch,
    targets: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
) -> float:
    """One shuffled pass; a conversation's loss is the mean ``-log p(reply)`` of its
    right replies."""
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
    model.train()
    losses = []
    steps = range(0, len(order), config.batch_size)
    for start in tqdm(steps, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=None, leave=False):
        rows = order[start : start + config.batch_size]
        batch, right = _rows(inputs, rows).to(device), targets[rows].to(device)
        output = model(batch)
        states = model.scoring_states(output.states[:, -1])
        log_p = model.score(states, model.candidate_vectors(), batch).log_softmax(1)
        loss = -((log_p * right).sum(1) / right.sum(1)).mean()
        if output.aux_loss is not None:  # e.g. a VAE head's KL term
            loss = loss + output.aux_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))
