"""The finance domain's PhraseBank reader (split determinism, no leakage across levels)
and the lexicon baseline."""

import pytest

from conftest import SHARED_DATA
from temporec.data.phrasebank import LEVELS, read_phrasebank, split_of
from temporec.training.lexicon import lexicon_label

PHRASEBANK = SHARED_DATA / "financial-phrasebank"
needs_phrasebank = pytest.mark.skipif(not PHRASEBANK.is_dir(), reason=f"{PHRASEBANK} is absent (the real data set)")


def test_split_is_a_function_of_the_text():
    assert split_of("Operating profit rose .") == split_of("Operating profit rose .")


@pytest.mark.parametrize(
    "text, label",
    [
        ("Operating profit rose to EUR 5 mn .", "positive"),
        ("Net sales fell by 10 % .", "negative"),
        ("The company did not report a loss .", "positive"),
        ("The meeting is held in Helsinki .", "neutral"),
    ],
)
def test_lexicon(text, label):
    assert lexicon_label(text) == label


@needs_phrasebank
def test_no_test_sentence_of_a_level_is_trained_on_at_another():
    splits = {level: read_phrasebank(PHRASEBANK, level) for level in LEVELS}
    all_test = {s.text for s in splits["AllAgree"]["test"]}
    assert all_test and not all_test & {s.text for s in splits["50Agree"]["train"]}
    assert sum(map(len, splits["AllAgree"].values())) >= 2200
