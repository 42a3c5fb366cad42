"""The ``customer_service`` domain: the best replies (reply templates, FAQ answers) for
the next agent turn of a conversation.

The history is the conversation so far: user and agent turns as text events (item id
empty), or an agent turn that sent a catalog reply (its item id). The head reads the
turns in order, so later turns can weigh more; the frozen-encoder baseline makes that
explicit (each turn back counts half as much). Data: StackFAQ, BANKING77 and generic
``conversations.jsonl`` files (``temporec.data.faq``); models are trained with
``temporec.training.conversations`` (turns are text, which the next-item trainer does
not read).

Below a confidence threshold the domain hands the conversation to a human instead of
guessing: ``confidence`` is the model's softmax probability of its top reply among the
allowed ones, ``hand_off`` compares it with ``handoff_threshold`` (a request option).
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

from temporec import Domain, hookimpl
from temporec.data.faq import ConversationData, load_conversation_data
from temporec.training.domain_eval import (
    Scorer,
    TextVectors,
    bm25_scorer,
    embedding_scorer,
    popularity_scorer,
)
from temporec.types import Catalog, Dataset, Event, Query
from temporec_plugins.domains.options import read_options

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
    turn_decay = 0.5  # frozen-encoder baseline: each earlier turn weighs this much of the next

    def load_dataset(self, path: str) -> Dataset:
        """The training conversations, each ending with its right reply as the agent's event."""
        return load_conversation_data(path).as_dataset()

    def load_conversations(self, path: str | Path) -> ConversationData:
        return load_conversation_data(path)

    def apply_rules(self, query: Query, history: list[int], catalog: Catalog, allowed: torch.Tensor) -> list[str]:
        rules = super().apply_rules(query, history, catalog, allowed)
        excluded = [
            catalog.index[i] for i in read_options(query, CustomerServiceOptions).exclude_item_ids if i in catalog.index
        ]
        if excluded and allowed[excluded].any():
            allowed[excluded] = False
            rules.append("exclude_filtered")
        return rules

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
            group_of = torch.tensor([index[value] for value in groups])
            mass = torch.zeros(*probabilities.shape[:-1], len(index)).index_add_(-1, group_of, probabilities)
            return mass.amax(-1)
        return probabilities.amax(-1)

    def hand_off(self, query: Query, scores: torch.Tensor, catalog: Catalog | None = None) -> bool:
        """Whether to hand the conversation to a human: the top reply's probability among
        the allowed ones (``scores``, forbidden at ``-inf``) is below the threshold."""
        threshold = read_options(query, CustomerServiceOptions).handoff_threshold
        return bool(self.confidence(scores, catalog) < threshold)

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


def _user_text(turns: list[Event]) -> str:
    return " ".join(e.text for e in turns if e.action == USER)


@hookimpl
def register_domains(register):
    register(CustomerServiceDomain)
