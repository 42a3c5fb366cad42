"""The ``finance`` domain: the sentiment of a financial text, negative, neutral or positive.

A request is a one-turn conversation: one text event (item id empty, action ``user``, the
text the sentence). The catalog is the three labels (items ``negative``, ``neutral``,
``positive``, each with a short descriptive text); the answer ranks them, best first, and
each item's score is the model's logit, so the top item is the class and the softmax of
the three scores its probabilities. Models train as customer service's do
(``temporec.training.fit_conversations``, any ``--tuning``): the sentence is the turn, its
label the right reply.

For the monitor (``temporec.monitor``), ``topics`` tags each text with the themes, sectors
and companies it is about (``topics.TopicTagger``).

No rule ever forbids a label, and no hand-off is decided unless a request sets
``handoff_threshold`` (0 by default: never): below it, the top label's probability hands
the text to a human.

Evaluation (``evaluate``): accuracy, macro-F1 and each class's F1 on the test split, with
95% bootstrap intervals over sentences, beside three baselines: the majority class of the
training split, the keyword lexicon (``temporec.training.lexicon_label``) and the frozen
encoder with multinomial logistic regression (fitted on the training split's frozen
embeddings, its L2 strength chosen on the validation split).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from temporec import (
    Catalog,
    Dataset,
    Domain,
    EvalRequest,
    Exclusions,
    Forbidden,
    HandOff,
    Query,
    Report,
    TrainRequest,
    hookimpl,
)
from temporec.data import PHRASEBANK_LABELS, ConversationData, DataError
from temporec.training import (
    LogisticRegression,
    artifact_scorer,
    embed_texts,
    fit_conversations,
    flat_metrics,
    lexicon_label,
    turn_texts,
    with_intervals,
)
from temporec_plugins.domains.finance.reader import load_phrasebank
from temporec_plugins.domains.finance.topics import TopicTagger

LABELS = PHRASEBANK_LABELS  # the catalog's items, in this order


@dataclass
class FinanceOptions:
    """What a finance request may ask for."""

    handoff_threshold: float = 0.0  # below this top-label probability: hand off to a human; 0: never


class FinanceDomain(Domain):
    name = "finance"
    description = "Financial sentiment: negative, neutral or positive, for a sentence of financial news."
    actions = ("user", "agent")  # the conversation roles; a text is a user turn
    default_head = "lstm"
    request_options = FinanceOptions
    provides = frozenset({"item_text"})  # sentences carry no timestamps

    def load_dataset(self, path: str) -> Dataset:
        """The training sentences, each a user turn followed by its label as the agent's event."""
        return self.load_conversations(path).as_dataset()

    def load_conversations(self, path: str | Path) -> ConversationData:
        """PhraseBank at ``path``: a ``Sentences_<level>.txt`` file or its directory (AllAgree)."""
        return load_phrasebank(path)

    def forbidden(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        return Exclusions(query, catalog).result()  # every label is always a possible answer

    def hand_off(self, query: Query, scores: torch.Tensor, catalog: Catalog | None = None) -> HandOff | None:
        """Only when the request asks (``handoff_threshold`` > 0): the top label's softmax
        probability below the threshold recommends a human."""
        threshold = query.options.handoff_threshold
        if threshold <= 0:
            return None
        confidence = float(torch.softmax(scores.float(), dim=-1).max())
        if confidence >= threshold:
            return HandOff(False, confidence, threshold)
        reason = f"the top label's probability {confidence:.3f} is below the hand-off threshold {threshold:g}"
        return HandOff(True, confidence, threshold, reason)

    def topics(self, texts: list[str], vectors: torch.Tensor | None = None) -> list[tuple[str, ...]]:
        """The monitor's topics of each text (docs/finance.md#topics): the tagger's rules.
        ``vectors`` go unused: they come from the model's tuned encoder, whose space is not
        the base encoder's in which the zero-shot prototypes were made."""
        return _tagger().tag(texts)

    def train(self, request: TrainRequest) -> Path:
        """Train on PhraseBank at ``request.data``: the sentence is the turn, its label the reply."""
        return fit_conversations(request, self.load_conversations(request.data), self)

    def evaluate(self, request: EvalRequest) -> Report:
        """Accuracy, macro-F1 and per-class F1 (``<metric>_low`` / ``_high``: the 95%
        bootstrap interval) on the test split of the data at ``request.data``, of the
        model and of the majority class, the lexicon and the frozen encoder's logistic
        regression (key ``frozen-lr.test.l2``: its L2 strength, chosen on validation)."""
        model = request.model
        if sorted(model.catalog.item_ids) != sorted(LABELS):
            raise DataError(f"{model.path}: a finance model's catalog is {list(LABELS)}, not {model.catalog.item_ids}")
        data = self.load_conversations(request.data)
        if not data.test:
            raise DataError(f"{data.name}: no test sentence to evaluate on")
        head = model.manifest.head
        texts = _texts(data.test)
        turns = embed_texts(request.open_encoder(), texts, request.cache_dir)
        scores = artifact_scorer(model, turns.__getitem__)([c.turns for c in data.test])
        predictions = {
            head: [model.catalog.item_ids[i] for i in scores.argmax(1).tolist()],
            "majority": [majority_label(data)] * len(texts),
            "lexicon": [lexicon_label(text) for text in texts],
        }
        probe, l2 = self.frozen_probe(request, data)
        predictions["frozen-lr"] = probe
        truth = _labels(data.test)
        results = {name: measured(truth, predicted) for name, predicted in predictions.items()}
        metrics = {**flat_metrics(results, head, "test"), "frozen-lr.test.l2": l2}
        same = data.as_dataset().fingerprint() == model.manifest.data_fingerprint
        return Report(
            str(model.path), head, data.name, model.manifest.data_fingerprint, same, len(data.test), 0, metrics
        )

    @staticmethod
    def frozen_probe(request: EvalRequest, data: ConversationData) -> tuple[list[str], float]:
        """The frozen encoder's logistic regression: its test predictions and L2 strength.
        Frozen means the encoder a tuned model started from (``open_base_encoder``)."""
        encoder = (request.open_base_encoder or request.open_encoder)()
        vectors = embed_texts(encoder, turn_texts(data), request.cache_dir)

        def split(conversations):
            features = torch.stack([vectors[text] for text in _texts(conversations)])
            return features, torch.tensor([LABELS.index(label) for label in _labels(conversations)])

        fitted, l2 = LogisticRegression.chosen_on(split(data.train), split(data.valid), len(LABELS))
        return [LABELS[i] for i in fitted.predict(split(data.test)[0]).tolist()], l2


@functools.cache
def _tagger() -> TopicTagger:
    return TopicTagger()  # compiled once: tens of patterns


def majority_label(data: ConversationData) -> str:
    """The training split's most frequent label (the first in ``LABELS`` on a tie)."""
    counts = Counter(_labels(data.train))
    return max(LABELS, key=lambda label: (counts[label], -LABELS.index(label)))


def measured(truth: list[str], predicted: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1, per-class F1 and their 95% intervals (``with_intervals``)."""
    index = {label: i for i, label in enumerate(LABELS)}
    as_tensor = lambda labels: torch.tensor([index[label] for label in labels])
    return with_intervals(as_tensor(truth), as_tensor(predicted), LABELS)


def _texts(conversations) -> list[str]:
    return [c.turns[-1].text for c in conversations]


def _labels(conversations) -> list[str]:
    return [c.replies[0] for c in conversations]


@hookimpl
def register_domains(register):
    register(FinanceDomain)
