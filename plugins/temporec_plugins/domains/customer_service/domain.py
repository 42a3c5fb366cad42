"""The ``customer_service`` domain: the best replies (reply templates, FAQ answers) for
the next agent turn of a conversation.

The history is the conversation so far: user and agent turns as text events (item id
empty), or an agent turn that sent a catalog reply (its item id). The head reads the
turns in order, so later turns can weigh more; the frozen-encoder baseline makes that
explicit (each turn back counts half as much). Data: StackFAQ, BANKING77 and generic
``conversations.jsonl`` files (``temporec_plugins.domains.customer_service.reader``); models are trained with
``temporec_plugins.domains.customer_service.training`` (turns are text, which the next-item trainer does
not read).

Below a confidence threshold the domain hands the conversation to a human instead of
guessing: ``confidence`` is the model's softmax probability of its top reply among the
allowed ones, ``hand_off`` compares it with ``handoff_threshold`` (a request option); the
service puts the answer in the response (``Recommendation.hand_off``, rule ``handoff``).
The data has no timestamps (``provides``): heads that require them are refused.
Replies that answer the same question (equal catalog feature ``thread``, as StackFAQ's
answers of one thread) are interchangeable, so their probabilities count together.
Rules: replies already sent in this conversation are not proposed again (the base rule),
and replies the request excludes are left out (``exclude_filtered``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from temporec import (
    Catalog,
    Dataset,
    Domain,
    EvalRequest,
    Event,
    Exclusions,
    Forbidden,
    HandOff,
    Query,
    Report,
    TrainRequest,
    hookimpl,
)
from temporec.data import DataError
from temporec.training import (
    Scorer,
    TextVectors,
    artifact_scorer,
    bm25_scorer,
    embedding_scorer,
    evaluate_replies,
    fit_conversations,
    flat_metrics,
    frozen_item_embeddings,
    popularity_scorer,
)
from temporec_plugins.domains.customer_service.reader import (
    SPLITS,
    ConversationData,
    load_conversation_data,
)
from temporec_plugins.domains.customer_service.training import (
    embed_texts,
    reply_cases,
    turn_texts,
)

USER = "user"
GROUP_FEATURE = "thread"  # replies with equal values answer the same question


@dataclass
class CustomerServiceOptions:
    """What a customer-service request may ask for."""

    handoff_threshold: float = 0.3  # below this top-reply probability: hand off to a human
    exclude_item_ids: list[str] = field(default_factory=list)  # replies not to propose


class CustomerServiceDomain(Domain):
    name = "customer_service"
    description = "Customer service: the best replies for the next agent turn, or a hand-off to a human."
    actions = (USER, "agent")
    default_head = "lstm"
    request_options = CustomerServiceOptions
    provides = frozenset({"item_text"})  # conversations carry no timestamps
    turn_decay = 0.5  # frozen-encoder baseline: each earlier turn weighs this much of the next

    def load_dataset(self, path: str) -> Dataset:
        """The training conversations, each ending with its right reply as the agent's event."""
        return load_conversation_data(path).as_dataset()

    def load_conversations(self, path: str | Path) -> ConversationData:
        return load_conversation_data(path)

    def forbidden(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        rules = Exclusions(query, catalog)
        rules.exclude_history(history)
        rules.exclude(
            "exclude_filtered", [catalog.index[i] for i in query.options.exclude_item_ids if i in catalog.index]
        )
        return rules.result()

    # -- hand-off --------------------------------------------------------------------

    @staticmethod
    def confidence(scores: torch.Tensor, catalog: Catalog | None = None) -> torch.Tensor:
        """The softmax probability of the top reply, per row of model scores (logits;
        forbidden replies at ``-inf`` take no probability), with the replies of one
        ``thread`` (when the catalog has that feature) counted together."""
        probabilities = torch.softmax(scores.float(), dim=-1)
        groups = catalog.features.get(GROUP_FEATURE) if catalog is not None else None
        if groups:
            index = {value: i for i, value in enumerate(dict.fromkeys(groups))}
            group_of = torch.tensor([index[value] for value in groups], device=probabilities.device)
            mass = probabilities.new_zeros(*probabilities.shape[:-1], len(index))
            mass.index_add_(-1, group_of, probabilities)
            return mass.amax(-1)
        return probabilities.amax(-1)

    def hand_off(self, query: Query, scores: torch.Tensor, catalog: Catalog | None = None) -> HandOff:
        """Whether to hand the conversation to a human (truthy when so): the top reply's
        probability among the allowed ones (``scores``, one row, forbidden at ``-inf``) is
        below the threshold, or no reply is allowed at all."""
        threshold = query.options.handoff_threshold
        if not torch.isfinite(scores).any():
            return HandOff(True, 0.0, threshold, "no reply is left to propose")
        confidence = float(self.confidence(scores, catalog))
        if confidence >= threshold:
            return HandOff(False, confidence, threshold)
        reason = f"the top reply's probability {confidence:.3f} is below the hand-off threshold {threshold:g}"
        return HandOff(True, confidence, threshold, reason)

    # -- evaluation ------------------------------------------------------------------

    def baselines(
        self, data: ConversationData, item_embeddings: torch.Tensor, text_vectors: TextVectors
    ) -> dict[str, Scorer]:
        """Popularity (training replies), BM25 of the user's turns, and the frozen
        encoder: cosine between the conversation (later turns weighing more) and each reply."""
        catalog = data.catalog
        counts = np.bincount([catalog.index[c.replies[0]] for c in data.train], minlength=len(catalog))
        return {
            "popularity": popularity_scorer(torch.from_numpy(counts).float()),
            "bm25": bm25_scorer(catalog, _user_text),
            "frozen-encoder": embedding_scorer(item_embeddings, catalog, text_vectors, self.turn_decay),
        }

    # -- training and evaluation (``temporec train`` / ``temporec eval``) ----------------

    def train(self, request: TrainRequest) -> Path:
        """Train on the conversations at ``request.data`` (``fit_conversations``): the
        turns enter the head as text events, and the right replies are the targets."""
        return fit_conversations(request, self.load_conversations(request.data), self)

    def evaluate(self, request: EvalRequest) -> Report:
        """Rank every reply for each test conversation at ``data`` (``evaluate_replies``):
        accuracy@1/@3, P@1/@3 and MRR of the model and of the ``baselines``. The turns
        are embedded by the model's encoder; conversations naming replies or turns outside
        the model's catalog are left out (their turns counted as dropped events)."""
        model = request.model
        conversations, dropped = _within(self.load_conversations(request.data), model.catalog)
        if not conversations.test:
            raise DataError(f"{conversations.name}: no test conversation to evaluate on")
        turns = embed_texts(request.open_encoder(), turn_texts(conversations), request.cache_dir).__getitem__
        head = model.manifest.head
        rankers = {
            head: artifact_scorer(model, turns),
            **self.baselines(conversations, *_frozen(request, conversations, turns)),
        }
        results = evaluate_replies(rankers, reply_cases(conversations.test), conversations.catalog)
        fingerprint = model.manifest.data_fingerprint
        same = conversations.as_dataset().fingerprint() == fingerprint
        metrics = flat_metrics(results, head, "test")
        return Report(
            str(model.path), head, conversations.name, fingerprint, same, len(conversations.test), dropped, metrics
        )


def _frozen(
    request: EvalRequest, data: ConversationData, turns: TextVectors
) -> tuple[torch.Tensor | None, TextVectors]:
    """The reply embeddings and the turn vectors of the frozen encoder: the model's own,
    unless its training tuned the language model (then those of the encoder it started
    from, so that the baselines stay the frozen encoder's)."""
    replies = frozen_item_embeddings(request)
    if request.open_base_encoder is None:
        return replies, turns
    base = request.open_base_encoder()
    return replies, embed_texts(base, turn_texts(data), request.cache_dir).__getitem__


def _within(data: ConversationData, catalog: Catalog) -> tuple[ConversationData, int]:
    """``data`` over ``catalog`` (a model's), without the conversations that name items
    it lacks; also returns how many turns those had."""

    def known(conversation) -> bool:
        items = [*conversation.replies, *(e.item_id for e in conversation.turns if e.item_id)]
        return all(item in catalog.index for item in items)

    parts = {split: data.split(split) for split in SPLITS}
    dropped = sum(len(c.turns) for part in parts.values() for c in part if not known(c))
    kept = {split: [c for c in part if known(c)] for split, part in parts.items()}
    return ConversationData(data.name, catalog, **kept), dropped


def _user_text(turns: list[Event]) -> str:
    return " ".join(e.text for e in turns if e.action == USER)


@hookimpl
def register_domains(register):
    register(CustomerServiceDomain)
