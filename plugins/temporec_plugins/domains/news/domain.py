"""The ``news`` domain: articles clicked from impressions (lists of articles shown).

Data: MIND-format directories (``temporec_plugins.domains.news.reader``): MIND itself, or NeMig, which
has no impression times (an impression is then dated by its newest candidate's
publication date, and a history click by its article's). Articles are short-lived, so
models are trained on their text alone (``training_config``: no id embeddings, which
would stay untrained for every article published after training), and the time gap
between clicks enters every event.

Split: with MIND's parts (``*_train``, ``*_dev``) the dev impressions are the test; else
each user's last impression is, and the earlier ones are training data. A user's
training history is the impression's history, then the clicks of the training
impressions in order, each click with the impression's unclicked articles as passed over
(``Event.passed_over``): training also ranks a click against them alone, which is how the
model learns what makes an article chosen over the others shown with it. ``load_dataset`` returns those histories (clicks only), so
``temporec train --domain news`` never sees a test impression.

Rules: clicked articles are not offered again (the base rule); when the candidates come
from the catalog rather than the request (an impression list), articles published more
than ``max_age_days`` before the newest event of the history are left out
(``exclude_stale``; catalogs with a ``published`` feature).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from temporec import (
    Catalog,
    Dataset,
    Domain,
    EvalRequest,
    Event,
    Exclusions,
    Forbidden,
    Query,
    Report,
    hookimpl,
)
from temporec.data import DataError
from temporec.training import (
    ImpressionCase,
    Scorer,
    TrainConfig,
    artifact_scorer,
    bm25_scorer,
    embedding_scorer,
    evaluate_impressions,
    event_text,
    flat_metrics,
    frozen_item_embeddings,
    popularity_scorer,
)
from temporec_plugins.domains.news.reader import Impression, NewsData, load_news

CLICK = "click"
DAY = 86_400.0
# The choice among an impression's articles weighs this much beside the catalog-wide loss,
# which is larger (about ln(articles) against ln(shown)): on NeMig DE the impressions' AUC
# was 0.537 at 1, 0.553 at 5, 0.560 at 20 (one seed each).
PASSED_OVER_WEIGHT = 20.0


@dataclass
class NewsOptions:
    """What a news request may ask for."""

    max_age_days: float = 7.0  # catalog candidates: at most this old (0: any age)


@dataclass
class NewsSplit:
    """Training histories (clicks, oldest first), the test impressions, and the catalog
    with each article's click rate in the training impressions as a feature (``click_rate``,
    when they have unclicked articles)."""

    train: dict[str, list[Event]]
    test: list[ImpressionCase]
    catalog: Catalog


class NewsDomain(Domain):
    name = "news"
    description = "News: the next article clicked, from a click history (MIND-format impressions)."
    actions = (CLICK, "impression")
    default_head = "lstm"
    request_options = NewsOptions
    #: shown-but-not-clicked events are signals, never targets
    target_weights = {"impression": 0.0}

    def load_dataset(self, path: str) -> Dataset:
        """The training click histories of the MIND-format data at ``path``."""
        data = load_news(path)
        split = self.split(data)
        return Dataset(data.name, split.catalog, split.train)

    def load_news(self, path: str | Path) -> NewsData:
        return load_news(path)

    def training_config(self, dataset: Dataset, config: TrainConfig | None = None) -> TrainConfig:
        """``config`` without id embeddings (articles are recommended when new), with
        the news target weights and, unless it sets them, ``PASSED_OVER_WEIGHT`` and the
        articles' click rate as their feature (when the data set has it: ``split``)."""
        config = config or TrainConfig()
        weight = PASSED_OVER_WEIGHT if config.passed_over_weight is None else config.passed_over_weight
        targets = config.target_weights or dict(self.target_weights)
        rated = dataset is not None and CLICK_RATE in dataset.catalog.features
        features = config.item_features or ([CLICK_RATE] if rated else [])
        return replace(config, use_ids=False, target_weights=targets, passed_over_weight=weight, item_features=features)

    def forbidden(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        rules = Exclusions(query, catalog)
        rules.exclude_history(history)
        options: NewsOptions = query.options
        newest = max((e.timestamp for e in query.history), default=0.0)
        if query.candidates or not (options.max_age_days and newest and catalog.features.get("published")):
            return rules.result()
        dated, times, undated = catalog.derived("news.by_publication", _by_publication)
        fresh = dated[np.searchsorted(times, newest - options.max_age_days * DAY, side="left") :]
        rules.keep_only("exclude_stale", np.concatenate([fresh, undated]))
        return rules.result()

    # -- split and evaluation ----------------------------------------------------------

    def split(self, data: NewsData) -> NewsSplit:
        """Training histories and test impressions (see the module's docstring)."""
        published = _published(data.catalog)
        by_user: dict[str, list[Impression]] = {}
        for impression in data.impressions:
            by_user.setdefault(impression.user, []).append(impression)
        has_parts = any(i.part == "dev" for i in data.impressions)
        train, test = {}, []
        for user, impressions in by_user.items():
            impressions.sort(key=_order)
            if has_parts:
                earlier = [i for i in impressions if i.part == "train"]
                tested = [i for i in impressions if i.part == "dev"]
            else:
                earlier, tested = impressions[:-1], impressions[-1:]
            events = _clicks(earlier, published) if earlier else _history(tested[0], published) if tested else []
            if events:
                train[user] = events
            for impression in tested:
                history = events or _history(impression, published)
                test.append(ImpressionCase(history, impression.candidates, impression.labels))
        return NewsSplit(train, test, _with_click_rates(data.catalog, train))

    def baselines(
        self, data: NewsData, split: NewsSplit, item_embeddings: torch.Tensor | None = None
    ) -> dict[str, Scorer]:
        """Popularity (training clicks), click rate (clicks per showing in the training
        impressions), recency (newest article first, when the data has
        dates), BM25 of the history's texts, and the frozen encoder's cosine similarity
        (when ``item_embeddings`` are given)."""
        catalog = data.catalog
        counts = np.bincount(
            [catalog.index[e.item_id] for h in split.train.values() for e in h], minlength=len(catalog)
        )
        rankers = {
            "popularity": popularity_scorer(torch.from_numpy(counts).float()),
            "click-rate": popularity_scorer(_click_rates(split.train, catalog)[0]),
        }
        published = _published(catalog)
        if any(published.values()):
            rankers["recency"] = popularity_scorer(torch.tensor([published.get(i, 0.0) for i in catalog.item_ids]))
        text = event_text(catalog)
        rankers["bm25"] = bm25_scorer(catalog, lambda history: " ".join(text(e) for e in history))
        if item_embeddings is not None:
            rankers["frozen-encoder"] = embedding_scorer(item_embeddings, catalog, decay=0.8)
        return rankers

    # -- evaluation (``temporec eval``; training is the default ``Domain.train``) ---------

    def evaluate(self, request: EvalRequest) -> Report:
        """Score each test impression's candidates (see ``split``) as MIND does: AUC,
        MRR, nDCG@5 and nDCG@10 of the model and of the ``baselines``, over the
        impressions with both a click and a non-click. Article ids outside the model's
        catalog leave histories and impressions (counted as dropped events)."""
        model = request.model
        news, dropped = _within(self.load_news(request.data), model.catalog)
        split = self.split(news)
        head = model.manifest.head
        rankers = {head: artifact_scorer(model), **self.baselines(news, split, frozen_item_embeddings(request))}
        results, skipped = evaluate_impressions(rankers, split.test, news.catalog)
        if not results[head]:
            raise DataError(f"{news.name}: no test impression has both a click and a non-click")
        fingerprint = model.manifest.data_fingerprint
        same = Dataset(news.name, split.catalog, split.train).fingerprint() == fingerprint
        metrics = flat_metrics(results, head, "test")
        return Report(str(model.path), head, news.name, fingerprint, same, len(split.test) - skipped, dropped, metrics)


CLICK_RATE = "click_rate"  # the catalog feature: an article's click-rate tenth, or "unshown"
CLICK_RATE_PRIOR = 3.0  # showings' worth of the overall click rate added to every article's
CLICK_RATE_BUCKETS = 10


def _click_counts(histories: dict[str, list[Event]], catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """Each article's clicks and showings in the training impressions (the clicks that
    have passed-over articles beside them)."""
    clicks, shown = np.zeros(len(catalog)), np.zeros(len(catalog))
    for event in (e for events in histories.values() for e in events if e.passed_over):
        clicks[catalog.index[event.item_id]] += 1
        shown[catalog.index[event.item_id]] += 1
        np.add.at(shown, [catalog.index[item] for item in event.passed_over], 1)
    return clicks, shown


def _click_rates(histories: dict[str, list[Event]], catalog: Catalog) -> tuple[torch.Tensor, np.ndarray]:
    """Each article's clicks per showing in the training impressions, smoothed towards the
    overall rate (an article shown twice and clicked once is not ranked above one clicked
    40 times in 100), and how often each was shown."""
    clicks, shown = _click_counts(histories, catalog)
    overall = clicks.sum() / max(shown.sum(), 1)
    return torch.from_numpy((clicks + CLICK_RATE_PRIOR * overall) / (shown + CLICK_RATE_PRIOR)).float(), shown


def _with_click_rates(catalog: Catalog, histories: dict[str, list[Event]]) -> Catalog:
    """``catalog`` with the ``click_rate`` feature: the tenth (among the articles shown in
    the training impressions) of each article's smoothed click rate, "unshown" for the
    others. A model embeds it as it embeds any feature, so it learns how much an article's
    record with readers counts beside its text and the reader's history: the popularity
    that news needs, measured against exposure. ``catalog`` itself when nothing was shown."""
    rates, shown = _click_rates(histories, catalog)
    seen = shown > 0
    if not seen.any():
        return catalog
    rates = rates.numpy()
    edges = np.quantile(rates[seen], np.linspace(0, 1, CLICK_RATE_BUCKETS + 1)[1:-1])
    tenths = np.searchsorted(edges, rates)
    values = [f"q{tenth}" if was_shown else "unshown" for tenth, was_shown in zip(tenths, seen)]
    return Catalog(catalog.item_ids, catalog.texts, {**catalog.features, CLICK_RATE: values})


def _within(data: NewsData, catalog: Catalog) -> tuple[NewsData, int]:
    """``data`` over ``catalog`` (a model's): ids it lacks leave the histories and the
    impressions; also returns how many were left out."""
    impressions, dropped = [], 0
    for impression in data.impressions:
        history = [item for item in impression.history if item in catalog.index]
        pairs = zip(impression.candidates, impression.labels)
        shown = [(item, label) for item, label in pairs if item in catalog.index]
        dropped += len(impression.history) - len(history) + len(impression.candidates) - len(shown)
        candidates, labels = [item for item, _ in shown], [label for _, label in shown]
        impressions.append(replace(impression, history=history, candidates=candidates, labels=labels))
    return NewsData(data.name, catalog, impressions, data.dropped, data.layout), dropped


def _published(catalog: Catalog) -> dict[str, float]:
    values = catalog.features.get("published", [])
    return {item: float(value) for item, value in zip(catalog.item_ids, values) if value}


def _order(impression: Impression) -> tuple:
    """Impressions in time, then id order (numerically when ids are numbers)."""
    key = impression.id
    return (impression.time, int(key) if key.isdigit() else 0, key)


def _history(impression: Impression, published: dict[str, float]) -> list[Event]:
    """The impression's history as click events, dated by publication where known (then
    sorted by it, so that times never go back)."""
    events = [Event(item, CLICK, published.get(item, 0.0)) for item in impression.history]
    return sorted(events, key=lambda e: e.timestamp)


def _clicks(impressions: list[Impression], published: dict[str, float]) -> list[Event]:
    """The first impression's history, then every impression's clicks, in order, each with
    the impression's unclicked articles as passed over; an impression without a time is
    dated by its newest candidate (never earlier than the event before)."""
    events = _history(impressions[0], published)
    for impression in impressions:
        time = impression.time or max((published.get(c, 0.0) for c in impression.candidates), default=0.0)
        time = max(time, events[-1].timestamp if events else 0.0)
        passed = tuple(item for item, label in zip(impression.candidates, impression.labels) if not label)
        events += [Event(item, CLICK, time, passed_over=passed) for item in impression.clicked]
    return events


@hookimpl
def register_domains(register):
    register(NewsDomain)


def _by_publication(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dated rows in order of publication, their times, and the undated rows."""
    published = catalog.features["published"]
    dated = np.array([i for i, p in enumerate(published) if p], dtype=np.int64)
    times = np.array([float(published[i]) for i in dated], dtype=np.float64)
    order = np.argsort(times, kind="stable")
    undated = np.array([i for i, p in enumerate(published) if not p], dtype=np.int64)
    return dated[order], times[order], undated
