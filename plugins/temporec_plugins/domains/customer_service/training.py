"""Training on conversations: ``temporec.training.conversations`` (in the core, so that
other domains train with it too), under the names this domain has always given it."""

from temporec.training import embed_texts, reply_cases, train_conversations, turn_texts

__all__ = ["embed_texts", "reply_cases", "train_conversations", "turn_texts"]
