"""Conversations as data: the turns so far (events, most known by their text) and the
catalog replies (FAQ answers, reply templates, class labels) that are right next, split
into train / valid / test. Readers of particular layouts (StackFAQ, BANKING77,
conversations.jsonl, PhraseBank) live with the domains that read them and return a
``ConversationData``; the conversation trainer (``temporec.training.conversations``)
reads it."""

from __future__ import annotations

from dataclasses import dataclass

from temporec.contract.errors import allowed
from temporec.contract.types import Catalog, Dataset, Event

SPLITS = ("train", "valid", "test")


@dataclass
class Conversation:
    id: str
    turns: list[Event]  # oldest first; the last is usually the user's
    replies: list[str]  # the catalog items that are right for the next agent turn


@dataclass
class ConversationData:
    name: str
    catalog: Catalog
    train: list[Conversation]
    valid: list[Conversation]
    test: list[Conversation]

    def split(self, name: str) -> list[Conversation]:
        if name not in SPLITS:
            raise ValueError(f"split {name!r}; allowed: {allowed(SPLITS)}")
        return getattr(self, name)

    def as_dataset(self) -> Dataset:
        """The training conversations as histories: the turns, then the (first) right
        reply as the agent's event."""
        sequences = {c.id: [*c.turns, Event(c.replies[0], "agent")] for c in self.train}
        return Dataset(self.name, self.catalog, sequences)
