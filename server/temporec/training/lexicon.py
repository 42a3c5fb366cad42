"""A keyword (lexicon) sentiment baseline. The word lists are ours, small and written
for PhraseBank-style news sentences; they are not Loughran-McDonald. A polarity word
within three words after a negation ("not", "no", "without", ...) counts reversed;
the sign of the sum decides, zero is neutral."""

from __future__ import annotations

import re

POSITIVE = frozenset(
    "profit profits rose rise rises risen increase increased increases grew grow growth gain gains gained "
    "up improved improve improvement higher record strong stronger win won award awarded expand expanded "
    "expansion beat exceeded surge surged jumped positive boost boosted doubled recovery upgrade".split()
)
NEGATIVE = frozenset(
    "loss losses fell fall falls fallen decline declined declines decrease decreased drop dropped down "
    "lower weak weaker cut cuts layoffs lay-offs redundancies warning negative plunged slumped worse "
    "deteriorated bankruptcy downgrade shrank miss missed dispute lawsuit".split()
)
NEGATIONS = frozenset("not no never without nor n't".split())
NEGATION_REACH = 3  # words after a negation whose polarity it reverses
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*|n't")


def lexicon_label(text: str) -> str:
    score, negated_until = 0, -1
    for position, word in enumerate(WORD.findall(text.lower())):
        if word in NEGATIONS:
            negated_until = position + NEGATION_REACH
            continue
        polarity = (word in POSITIVE) - (word in NEGATIVE)
        score += -polarity if position <= negated_until else polarity
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"
