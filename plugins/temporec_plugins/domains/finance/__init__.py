"""The ``finance`` domain (issue 18, part 1): Financial PhraseBank sentiment.
``reader`` (the seeded split by sentence, per agreement level) and ``lexicon`` (the
keyword baseline). Not yet registered as a domain: see docs/finance.md."""

from temporec_plugins.domains.finance.lexicon import lexicon_label
from temporec_plugins.domains.finance.reader import LABELS, LEVELS, read_phrasebank, split_of

__all__ = ["LABELS", "LEVELS", "lexicon_label", "read_phrasebank", "split_of"]
