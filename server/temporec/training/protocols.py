"""The domains' evaluation protocols, each with its baselines run side by side.

Every ranker is a ``Scorer``: a batch of histories (lists of events, oldest first) ->
``(batch, n_items)`` scores over the catalog, higher is better. A trained model, the
popularity ranking, "most recently interacted", BM25 over item texts and the frozen
encoder's cosine similarity are all scorers, so each protocol ranks them the same way:

    next item      (retail) the whole catalog, masked by the domain's business rules
                   (a target the rules forbid counts as a miss): HR@K, NDCG@K, MRR
    impressions    (news, as MIND) each impression's candidates: AUC, MRR, nDCG@5/10
    replies        (customer service) every reply: accuracy@K (a right reply in the
                   top K), P@K (share of the top K that are right), MRR

Ties are broken at random with a fixed seed, so a ranker that cannot tell items apart
scores what a random order would, not what a lucky or unlucky order would.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from temporec.contract.domains import Domain
from temporec.contract.training import EvalRequest
from temporec.contract.types import Catalog, Event, Query
from temporec.model.artifacts import LoadedModel
from temporec.model.embedding_cache import catalog_embeddings
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.training.ranking_metrics import bootstrap_interval, mean_interval, summarize_with_intervals

Scorer = Callable[[list[list[Event]]], torch.Tensor]
TextVectors = Callable[[str], torch.Tensor]  # a text's encoder embedding
SEED = 0
BATCH = 256


# -- cases --------------------------------------------------------------------------


@dataclass
class NextItemCase:
    history: list[Event]
    target: str


@dataclass
class ImpressionCase:
    history: list[Event]
    candidates: list[str]
    labels: list[int]


@dataclass
class ReplyCase:
    turns: list[Event]
    replies: list[str]


# -- rankers ------------------------------------------------------------------------


def popularity_scorer(counts: torch.Tensor) -> Scorer:
    """The same ranking for everyone: ``counts`` (n_items,), e.g. training interactions."""
    counts = counts.float()
    return lambda histories: counts.expand(len(histories), -1).clone()


def recent_scorer(catalog: Catalog, counts: torch.Tensor) -> Scorer:
    """ "Most recently interacted": the history's items, the latest first, then every
    other item by popularity."""
    backoff = counts.float() / (counts.max().clamp(min=1) + 1)  # below 1: under any history item

    def score(histories: list[list[Event]]) -> torch.Tensor:
        scores = backoff.expand(len(histories), -1).clone()
        for row, events in enumerate(histories):
            for position, event in enumerate(events):
                index = catalog.index.get(event.item_id)
                if index is not None:
                    scores[row, index] = 1 + position  # later events overwrite earlier ones
        return scores

    return score


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class BM25:
    """Okapi BM25 (k1 = 1.5, b = 0.75) of a query against every catalog text."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        documents = [Counter(tokens(text)) for text in texts]
        lengths = np.array([sum(d.values()) for d in documents], dtype=np.float64)
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        frequency = Counter(term for d in documents for term in d)
        n = len(documents)
        self.n_items = n
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        by_term: dict[str, list[tuple[int, float]]] = {}
        for i, document in enumerate(documents):
            for term, tf in document.items():
                by_term.setdefault(term, []).append((i, tf * (k1 + 1) / (tf + norm[i])))
        for term, rows in by_term.items():
            idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
            items, weights = zip(*rows)
            self.postings[term] = (np.array(items), idf * np.array(weights))

    def scores(self, query: str) -> np.ndarray:
        result = np.zeros(self.n_items)
        for term, count in Counter(tokens(query)).items():
            if term in self.postings:
                items, weights = self.postings[term]
                result[items] += count * weights
        return result


def bm25_scorer(catalog: Catalog, query_text: Callable[[list[Event]], str]) -> Scorer:
    """BM25 of ``query_text(history)`` against the catalog texts."""
    index = BM25(catalog.texts)
    return lambda histories: torch.from_numpy(np.stack([index.scores(query_text(h)) for h in histories])).float()


def event_text(catalog: Catalog) -> Callable[[Event], str]:
    """An event's text: its own, else its catalog item's."""
    return lambda event: (
        event.text or (catalog.texts[catalog.index[event.item_id]] if event.item_id in catalog.index else "")
    )


def recency_weights(n: int, decay: float) -> torch.Tensor:
    """Weights of ``n`` events, oldest first: the last weighs 1, each earlier ``decay`` times less."""
    return decay ** torch.arange(n - 1, -1, -1, dtype=torch.float32)


def embedding_scorer(
    item_embeddings: torch.Tensor, catalog: Catalog, text_vectors: TextVectors | None = None, decay: float = 0.5
) -> Scorer:
    """The frozen encoder alone: cosine between each item's embedding and the history's
    embedding, a mean in which later events weigh more (``decay`` per step back). An
    event's embedding is its item's, or ``text_vectors(event.text)`` for events outside
    the catalog (left out without ``text_vectors``)."""
    items = torch.nn.functional.normalize(item_embeddings.float(), dim=1)

    def vectors(events: list[Event]) -> list[torch.Tensor]:
        found = []
        for event in events:
            index = catalog.index.get(event.item_id)
            if index is not None:
                found.append(items[index])
            elif text_vectors is not None and event.text:
                found.append(text_vectors(event.text))
        return found

    def score(histories: list[list[Event]]) -> torch.Tensor:
        queries = torch.zeros(len(histories), items.shape[1])
        for row, events in enumerate(histories):
            found = vectors(events)
            if found:
                queries[row] = (recency_weights(len(found), decay).unsqueeze(1) * torch.stack(found)).sum(0)
        return torch.nn.functional.normalize(queries, dim=1) @ items.T

    return score


def model_scorer(
    model: SequenceRecommender,
    catalog: Catalog,
    actions: Sequence[str],
    max_len: int,
    popularity: torch.Tensor,
    text_vectors: TextVectors | None = None,
) -> Scorer:
    """A trained model's scores, as the service computes them: events outside the
    catalog are represented by ``text_vectors(event.text)``; an empty history gets the
    popularity ranking (the service's cold start)."""
    action_index = {name: i for i, name in enumerate(actions)}
    device = model.device

    @torch.no_grad()
    def score(histories: list[list[Event]]) -> torch.Tensor:
        model.eval()
        items, action_ids, times, texts = [], [], [], []
        for events in histories:
            indices = [catalog.index.get(e.item_id, -1) for e in events]
            if text_vectors is None and -1 in indices:
                raise ValueError("a history event is outside the catalog and no text_vectors were given to embed it")
            items.append(indices)
            action_ids.append([action_index.get(e.action, 0) for e in events])
            times.append([e.timestamp for e in events])
            texts.append([text_vectors(e.text) if i < 0 else None for i, e in zip(indices, events)])
        batch = EventBatch.from_histories(items, action_ids, times, max_len, texts if text_vectors else None)
        batch = batch.to(device)
        scores = model.score(model.user_states(batch), model.candidate_vectors(), batch).float().cpu()
        empty = torch.tensor([not events for events in histories])
        return torch.where(empty.unsqueeze(1), popularity.float().expand_as(scores), scores)

    return score


def artifact_scorer(loaded: LoadedModel, text_vectors: TextVectors | None = None) -> Scorer:
    """``model_scorer`` of a saved model, with the settings its manifest records."""
    actions, max_len = loaded.manifest.actions, loaded.manifest.max_len
    return model_scorer(loaded.model, loaded.catalog, actions, max_len, loaded.popularity, text_vectors)


def frozen_item_embeddings(request: EvalRequest) -> torch.Tensor | None:
    """The frozen encoder's catalog embeddings, for the baselines that read them (None for
    a model without text): those the model holds, unless it tuned its language model (it
    holds the tuned encoder's) or is compact (it holds only its item vectors); then the
    catalog embedded by the encoder the model started from."""
    loaded = request.model
    if not loaded.manifest.use_text:
        return None
    if request.open_base_encoder is None and not loaded.model.frozen_items:
        return loaded.model.text_embeddings.cpu()
    encoder = (request.open_base_encoder or request.open_encoder)()
    return catalog_embeddings(encoder, loaded.catalog, cache_dir=request.cache_dir)


# -- ranking with random ties --------------------------------------------------------


def ranked(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, n) item indices, best first; equal scores in a random order."""
    shuffle = torch.randperm(scores.shape[1], generator=generator)
    order = torch.argsort(scores[:, shuffle], dim=1, descending=True, stable=True)
    return shuffle[order]


def target_rank(scores: torch.Tensor, target: int, generator: torch.Generator) -> int:
    """0-based rank of ``target`` in ``scores`` (1-D), its ties in a random order; items
    at ``-inf`` (forbidden) are never ahead of it, and a forbidden target is last."""
    value = scores[target]
    if value == float("-inf"):
        return len(scores)
    ahead = int((scores > value).sum())
    ties = int((scores == value).sum()) - 1
    return ahead + int(torch.randint(ties + 1, (1,), generator=generator))


# -- protocols ----------------------------------------------------------------------


def in_batches(scorer: Scorer, histories: list[list[Event]]):
    """Yield (start, float scores) of ``scorer`` over ``histories`` in batches."""
    for start in range(0, len(histories), BATCH):
        yield start, scorer(histories[start : start + BATCH]).float()


def evaluate_next_item(
    rankers: dict[str, Scorer], cases: list[NextItemCase], catalog: Catalog, domain: Domain
) -> dict[str, dict[str, float]]:
    """Each ranker's HR@K, NDCG@K (K = 5, 10, 20) and MRR for the cases' targets over the
    whole catalog, with the items that ``domain``'s rules forbid for each history masked."""
    masks = [rule_mask(domain, case.history, catalog) for case in cases]
    return {
        name: summarize_with_intervals(next_item_ranks(scorer, cases, catalog, masks))
        for name, scorer in rankers.items()
    }


def next_item_ranks(
    scorer: Scorer, cases: list[NextItemCase], catalog: Catalog, masks: list[torch.Tensor]
) -> torch.Tensor:
    """The 0-based rank of each case's target under ``scorer`` over the items its mask
    allows (``rule_mask``; a forbidden target is last), ties in a seeded random order."""
    generator = torch.Generator().manual_seed(SEED)
    ranks = []
    for start, scores in in_batches(scorer, [case.history for case in cases]):
        for row, row_scores in enumerate(scores):
            i = start + row
            target = catalog.index[cases[i].target]
            ranks.append(target_rank(row_scores.masked_fill(~masks[i], float("-inf")), target, generator))
    return torch.tensor(ranks)


def rule_mask(domain: Domain, history: list[Event], catalog: Catalog) -> torch.Tensor:
    """The items ``domain`` allows after ``history`` (a request without options)."""
    allowed = torch.ones(len(catalog), dtype=torch.bool)
    indices = [catalog.index[e.item_id] for e in history if e.item_id in catalog.index]
    domain.apply_rules(Query(domain.name, history, options=domain.request_options()), indices, catalog, allowed)
    return allowed


def evaluate_impressions(
    rankers: dict[str, Scorer], cases: list[ImpressionCase], catalog: Catalog
) -> tuple[dict[str, dict[str, float]], int]:
    """Each ranker's mean AUC, MRR, nDCG@5 and nDCG@10 over the impressions with both a
    click and a non-click (others are skipped; their count is returned)."""
    usable = [c for c in cases if 0 < sum(c.labels) < len(c.labels)]
    results = {}
    for name, scorer in rankers.items():
        generator = torch.Generator().manual_seed(SEED)
        rows = []
        for start, scores in in_batches(scorer, [case.history for case in usable]):
            for row, row_scores in enumerate(scores):
                case = usable[start + row]
                candidate_scores = row_scores[[catalog.index[c] for c in case.candidates]]
                rows.append(impression_metrics(case.labels, candidate_scores, generator))
        results[name] = impression_summary(rows)
    return results, len(cases) - len(usable)


def impression_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each per-impression metric, AUC and nDCG@10 with ``_low`` / ``_high``:
    their 95% bootstrap interval over the impressions."""
    if not rows:
        return {}
    summary = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    for key in ("auc", "ndcg@10"):
        summary[f"{key}_low"], summary[f"{key}_high"] = mean_interval([r[key] for r in rows])
    return summary


def impression_metrics(labels: Sequence[int], scores: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
    """MIND's per-impression metrics: AUC (ties count half), MRR (mean reciprocal rank of
    the clicks), nDCG@5 and nDCG@10 (gains 2^label - 1)."""
    labels_t = torch.tensor(labels, dtype=torch.float64)
    order = ranked(scores.unsqueeze(0), generator)[0]
    gains = labels_t[order]
    positions = torch.arange(1, len(gains) + 1, dtype=torch.float64)
    metrics = {"auc": auc(labels_t, scores.double()), "mrr": float((gains / positions).sum() / gains.sum())}
    ideal = labels_t.sort(descending=True).values
    for k in (5, 10):
        discount = 1 / torch.log2(positions[:k] + 1)
        metrics[f"ndcg@{k}"] = float(((2 ** gains[:k] - 1) * discount).sum() / ((2 ** ideal[:k] - 1) * discount).sum())
    return metrics


def auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """Probability that a clicked candidate outscores an unclicked one (ties: half)."""
    positive, negative = scores[labels > 0], scores[labels == 0]
    greater = (positive.unsqueeze(1) > negative.unsqueeze(0)).double().mean()
    equal = (positive.unsqueeze(1) == negative.unsqueeze(0)).double().mean()
    return float(greater + equal / 2)


def evaluate_replies(
    rankers: dict[str, Scorer], cases: list[ReplyCase], catalog: Catalog, ks: tuple[int, ...] = (1, 3)
) -> dict[str, dict[str, float]]:
    """Each ranker's accuracy@K, P@K and MRR: the top K of all replies against each
    conversation's right replies."""
    relevant = [torch.tensor([catalog.index[r] for r in case.replies]) for case in cases]
    results = {}
    for name, scorer in rankers.items():
        generator = torch.Generator().manual_seed(SEED)
        hits = []
        for start, scores in in_batches(scorer, [case.turns for case in cases]):
            order = ranked(scores, generator)
            hits += [torch.isin(row, relevant[start + r]) for r, row in enumerate(order)]
        results[name] = reply_metrics(torch.stack(hits), ks)
    return results


def reply_metrics(hits: torch.Tensor, ks: tuple[int, ...] = (1, 3)) -> dict[str, float]:
    """From ``hits`` (cases, n_items) bool, each row in ranked order. Accuracy@K and MRR
    come with ``_low`` / ``_high``: their 95% bootstrap interval over the cases."""
    metrics = {}
    first = hits.double().argmax(1)  # rows always hold a right reply: its rank is the case's
    for k in ks:
        top = hits[:, :k].double()
        metrics[f"accuracy@{k}"] = float(top.amax(1).mean())
        metrics[f"p@{k}"] = float(top.mean())
        # accuracy@K is HR@K of the first right reply's rank
        metrics[f"accuracy@{k}_low"], metrics[f"accuracy@{k}_high"] = bootstrap_interval(first, f"hr@{k}")
    metrics["mrr"] = float((1 / (first + 1)).mean())
    metrics["mrr_low"], metrics["mrr_high"] = bootstrap_interval(first, "mrr")
    return metrics


def flat_metrics(results: dict[str, dict[str, float]], model: str, split: str) -> dict[str, float]:
    """A protocol's ``results`` (ranker -> metrics) under the keys that training and
    ``temporec eval`` record: ``<split>.<metric>`` for the ranker named ``model``,
    ``<ranker>.<split>.<metric>`` for the baselines."""
    return {
        f"{split}.{metric}" if ranker == model else f"{ranker}.{split}.{metric}": value
        for ranker, metrics in results.items()
        for metric, value in metrics.items()
    }


def handoff_rates(probabilities: torch.Tensor, correct: torch.Tensor, threshold: float) -> dict[str, float]:
    """For a confidence ``threshold`` on each case's top probability: the share of cases
    answered (the rest handed to a human) and the accuracy@1 of the answered ones."""
    answered = probabilities >= threshold
    return {
        "answered": float(answered.double().mean()),
        "accuracy@1.answered": float(correct[answered].double().mean()) if answered.any() else float("nan"),
    }
