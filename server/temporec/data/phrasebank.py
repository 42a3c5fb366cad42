"""Financial PhraseBank (``Sentences_{AllAgree,75Agree,66Agree,50Agree}.txt``, lines
``sentence@label``; AllAgree is UTF-8, the others ISO-8859-1) as classification data.

The split is by sentence, not by file: the lower-agreement files contain the higher
ones' sentences, so each distinct sentence gets one split from a seeded hash of its
text (80/10/10 train/valid/test). The same sentence is then in the same split at every
agreement level: an AllAgree test sentence is never in 50Agree's training set, and the
split is the same for every model and every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from temporec.data.base import DataError

LEVELS = ("AllAgree", "75Agree", "66Agree", "50Agree")
LABELS = ("negative", "neutral", "positive")
SPLIT_SEED = "phrasebank-v1"  # changing it changes every model's test set
SPLIT_SHARES = (("train", 80), ("valid", 10), ("test", 10))  # percent


@dataclass(frozen=True)
class Sentence:
    text: str
    label: str


def split_of(text: str) -> str:
    """The split of a sentence: a seeded hash of its text, so levels agree."""
    bucket = int(hashlib.sha256(f"{SPLIT_SEED}:{text}".encode()).hexdigest(), 16) % 100
    for name, share in SPLIT_SHARES:
        if bucket < share:
            return name
        bucket -= share
    raise AssertionError("shares sum to 100")


def phrasebank_file(directory: str | Path, level: str) -> Path:
    if level not in LEVELS:
        raise DataError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    path = Path(directory) / f"Sentences_{level}.txt"
    if not path.is_file():
        raise DataError(f"{path}: no such PhraseBank file")
    return path


def read_phrasebank(directory: str | Path, level: str) -> dict[str, list[Sentence]]:
    """The sentences of one agreement level, by split (duplicates kept once)."""
    path = phrasebank_file(directory, level)
    encoding = "utf-8" if level == "AllAgree" else "iso-8859-1"
    splits: dict[str, list[Sentence]] = {name: [] for name, _ in SPLIT_SHARES}
    seen = set()
    for number, line in enumerate(path.read_text(encoding=encoding).splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("@")
        if not sep or label.strip() not in LABELS:
            raise DataError(f"{path}:{number}: expected 'sentence@label' with label in {', '.join(LABELS)}")
        text = text.strip()
        if text in seen:
            continue
        seen.add(text)
        splits[split_of(text)].append(Sentence(text, label.strip()))
    return splits
