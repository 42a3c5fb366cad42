"""Financial PhraseBank as conversations: each sentence is a one-turn conversation (a
user turn with the sentence's text) whose right reply is its label, an item of the
three-label catalog (``LABEL_CATALOG``).

``path`` is a ``Sentences_<level>.txt`` file (level AllAgree, 75Agree, 66Agree or
50Agree) or the directory holding them, which means AllAgree. The split is PhraseBank's
own fixed one (``temporec.data.read_phrasebank``: 80/10/10 by a seeded hash of each
sentence, so a sentence has the same split at every agreement level).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from temporec import Catalog, Event
from temporec.data import (
    PHRASEBANK_LABELS,
    PHRASEBANK_LEVELS,
    SPLITS,
    Conversation,
    ConversationData,
    DataError,
    phrasebank_file,
    read_phrasebank,
)

DEFAULT_LEVEL = "AllAgree"  # a directory means its all-agree sentences
LABEL_TEXTS = {
    "negative": "negative: bad news for the company or its investors, such as falling sales or profits, "
    "losses, job cuts or a downgrade",
    "neutral": "neutral: a plain fact about the company, neither good nor bad news for its investors",
    "positive": "positive: good news for the company or its investors, such as rising sales or profits, "
    "new orders, growth or an upgrade",
}
LABEL_CATALOG = Catalog(list(PHRASEBANK_LABELS), [LABEL_TEXTS[label] for label in PHRASEBANK_LABELS])


def phrasebank_level(path: str | Path) -> tuple[Path, str]:
    """The directory and agreement level that ``path`` names."""
    path = Path(path)
    if path.is_dir():
        return path, DEFAULT_LEVEL
    level = path.stem.removeprefix("Sentences_")
    if not path.name.startswith("Sentences_") or level not in PHRASEBANK_LEVELS:
        names = ", ".join(f"Sentences_{level}.txt" for level in PHRASEBANK_LEVELS)
        raise DataError(f"{path}: a PhraseBank file is one of {names}, or give their directory (AllAgree)")
    return path.parent, level


def load_phrasebank(path: str | Path) -> ConversationData:
    directory, level = phrasebank_level(path)
    splits = read_phrasebank(directory, level)
    conversations = {split: [_conversation(s.text, s.label) for s in splits[split]] for split in SPLITS}
    name = str(phrasebank_file(directory, level).resolve())
    return ConversationData(name, LABEL_CATALOG, **conversations)


def _conversation(text: str, label: str) -> Conversation:
    identifier = hashlib.sha256(text.encode()).hexdigest()[:16]  # stable across levels and runs
    return Conversation(identifier, [Event("", "user", 0.0, text)], [label])
