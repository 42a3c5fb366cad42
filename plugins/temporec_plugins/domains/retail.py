"""The ``retail`` domain: a shop's items, viewed, carted, favourited and purchased.

Data: the Taobao user-behaviour CSV (``temporec.data.taobao``: ids and categories, no
item text) or plain event files whose items may have text and a ``category`` feature
(``temporec.data.events``). Items without text are represented by their id and category
embeddings; with text, by their text too (see ``training_config``).

Actions count differently as signals and as targets. As signals every action has its
own learnt embedding. As targets, ``target_weights`` make a purchase count fully and a
view a fifth: a shop wants the next purchase, not the next page view.

Rules (``forbidden``), each named in the response when it removed something:

    exclude_purchased     durable items already purchased are not offered again (a
                          catalog feature ``durable`` of "0"/"false" marks consumables,
                          which may be bought again); viewed, favourited and carted items
                          stay: re-finding them is much of what shoppers do
    exclude_cart          carted items, when the request turns cart reminders off
    exclude_out_of_stock  items the catalog marks ``in_stock`` "0"/"false", or the
                          request lists as out of stock
    exclude_filtered      items the request excludes
    category_filter       only the request's categories
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    allowed,
    hookimpl,
)
from temporec.data import DataError, k_core, load_dataset
from temporec.training import (
    MIN_EVENTS,
    NextItemCase,
    Scorer,
    TrainConfig,
    artifact_scorer,
    evaluate_next_item,
    evaluate_recent_artifact,
    flat_metrics,
    popularity_scorer,
    recent_scorer,
    restrict_to_catalog,
)

NO = ("0", "false", "no")
PURCHASE = "purchase"


@dataclass
class RetailOptions:
    """What a shop's request may ask for."""

    categories: list[str] = field(default_factory=list)  # only items of these categories
    exclude_item_ids: list[str] = field(default_factory=list)  # never return these
    out_of_stock: list[str] = field(default_factory=list)  # out of stock right now
    remind_cart: bool = True  # carted items may be recommended (a reminder)


class RetailDomain(Domain):
    name = "retail"
    description = "E-commerce: the next item a shopper views, carts or buys (Taobao-style events)."
    actions = ("view", "cart", "favourite", PURCHASE)
    default_head = "lstm"
    request_options = RetailOptions
    provides = frozenset({"timestamps"})  # Taobao's items have no text
    #: as training targets (see TrainConfig.target_weights): the next purchase matters most
    target_weights = {"view": 0.2, "favourite": 0.5, "cart": 0.5, PURCHASE: 1.0}
    negatives = 1024  # sampled softmax: shop catalogs are too big for a full one
    #: Below this many events an item on average, most id embeddings are rows seen once or
    #: twice, learnt by heart: on Taobao (1.6 an item) they cost the repeat-aware lstm a
    #: tenth of its HR@10 (benchmarks/RESULTS.md, retail-taobao).
    min_events_per_item_for_ids = 5.0

    def load_dataset(self, path: str) -> Dataset:
        """Taobao behaviour files or event files (``temporec.data.load_dataset``), with
        every action checked against the retail vocabulary."""
        dataset = load_dataset(path)
        for user, events in dataset.sequences.items():
            for event in events:
                if event.action and event.action not in self.actions:
                    raise DataError(
                        f"{dataset.name}: user {user!r} has action {event.action!r}; allowed: {allowed(self.actions)}"
                    )
        return dataset

    def training_config(self, dataset: Dataset, config: TrainConfig | None = None) -> TrainConfig:
        """``config`` fitted to the data: text when items have it, the ``category``
        feature when there is one, sampled negatives unless the user chose (0: the full
        softmax), the retail target weights, and repeat-aware scores and unscaled ids
        unless the user chose (shoppers come back to what they viewed; scaled ids cost the
        plain heads a third of their HR@10 on Taobao: benchmarks/RESULTS.md, retail-taobao);
        id embeddings only where items recur enough to learn one (``use_ids``)."""
        config = config or TrainConfig()
        has_text = any(dataset.catalog.texts)
        features = config.item_features or [n for n in ("category",) if n in dataset.catalog.features]
        repeat_aware = True if config.repeat_aware is None else config.repeat_aware
        return replace(
            config,
            use_text=config.use_text and has_text,
            use_ids=self.use_ids(dataset, config.use_ids, has_text or bool(features), repeat_aware),
            item_features=features,
            negatives=min(self.negatives, len(dataset.catalog) - 1) if config.negatives is None else config.negatives,
            target_weights=config.target_weights or dict(self.target_weights),
            repeat_aware=repeat_aware,
            # the plain heads lose a third of their HR@10 with scaled ids on Taobao
            scale_ids=False if config.scale_ids is None else config.scale_ids,
        )

    def use_ids(self, dataset: Dataset, chosen: bool | None, described: bool, repeat_aware: bool) -> bool:
        """The user's choice, else id embeddings unless the items recur too seldom to learn
        one: then a repeat-aware model names the history's own items by its bonus, and the
        text or features ``described`` the others."""
        if chosen is not None:
            return chosen
        events = sum(map(len, dataset.sequences.values()))
        sparse = events / max(len(dataset.catalog), 1) < self.min_events_per_item_for_ids
        return not (sparse and repeat_aware and described)

    def forbidden(self, query: Query, history: list[int], catalog: Catalog) -> Forbidden:
        options: RetailOptions = query.options
        rules = Exclusions(query, catalog)
        if not query.allow_repeats:
            rules.exclude(
                "exclude_purchased", self._durable(self._indices(query.history, catalog, {PURCHASE}), catalog)
            )
        if not options.remind_cart:
            rules.exclude("exclude_cart", self._indices(query.history, catalog, {"cart"}))
        out = {catalog.index[i] for i in options.out_of_stock if i in catalog.index}
        rules.exclude("exclude_out_of_stock", out.union(catalog.derived("retail.out_of_stock", _out_of_stock)))
        rules.exclude("exclude_filtered", {catalog.index[i] for i in options.exclude_item_ids if i in catalog.index})
        if options.categories:
            by_category = catalog.derived("retail.by_category", _by_category)
            wanted = [by_category.get(category, NONE) for category in dict.fromkeys(options.categories)]
            rules.keep_only("category_filter", np.concatenate(wanted))
        return rules.result()

    @staticmethod
    def _indices(events: list[Event], catalog: Catalog, actions: set[str]) -> set[int]:
        return {catalog.index[e.item_id] for e in events if e.action in actions and e.item_id in catalog.index}

    @staticmethod
    def _durable(items: set[int], catalog: Catalog) -> set[int]:
        durable = catalog.features.get("durable")
        return items if durable is None else {i for i in items if durable[i].strip().lower() not in NO}

    # -- evaluation ------------------------------------------------------------------

    def next_item_cases(self, dataset: Dataset) -> list[NextItemCase]:
        """The leave-one-out test cases: each user's last event, after the rest (users
        with at least 3 events, as the trainer's splits)."""
        return [
            NextItemCase(events[:-1], events[-1].item_id)
            for events in dataset.sequences.values()
            if len(events) >= MIN_EVENTS
        ]

    def purchase_dataset(self, dataset: Dataset) -> Dataset:
        """Every history cut after its last purchase, so that leave-one-out tests the next
        purchase (users whose last purchase has fewer than 2 events before it are left out)."""
        sequences = {}
        for user, events in dataset.sequences.items():
            last = max((i for i, e in enumerate(events) if e.action == PURCHASE), default=-1)
            if last + 1 >= MIN_EVENTS:
                sequences[user] = events[: last + 1]
        return Dataset(f"{dataset.name}#purchases", dataset.catalog, sequences)

    def baselines(self, dataset: Dataset, cases: list[NextItemCase]) -> dict[str, Scorer]:
        """Popularity and "most recently interacted" (then popularity), counted over the
        test histories only (no test target is counted)."""
        counts = np.bincount(
            [dataset.catalog.index[e.item_id] for case in cases for e in case.history], minlength=len(dataset.catalog)
        )
        counts = torch.from_numpy(counts).float()
        return {"popularity": popularity_scorer(counts), "recent": recent_scorer(dataset.catalog, counts)}

    # -- evaluation (``temporec eval``; training is the default ``Domain.train``) ---------

    def evaluate(self, request: EvalRequest) -> Report:
        """Leave-one-out as every domain (``Domain.evaluate``), with "recent" beside
        popularity (shoppers come back to what they viewed: a target already in the
        history counts), and the next purchase: split ``purchase`` holds the test cases
        whose target is a purchase, ranked against the whole catalog under the retail
        rules (``evaluate_next_item``) beside popularity and "recent". No test target was
        a training target."""
        model = request.model
        # The core the model was trained on (``--min-interactions``; retail keeps all by default),
        # for the baselines and the purchase split as for leave-one-out.
        dataset = k_core(self.load_dataset(request.data), model.manifest.training.get("min_interactions") or 0)
        report = request.leave_one_out(dataset)
        within, _ = restrict_to_catalog(dataset, model.catalog)
        report.metrics.update(evaluate_recent_artifact(model, within))  # every split has every baseline
        bought = {user: events for user, events in within.sequences.items() if events[-1].action == PURCHASE}
        cases = self.next_item_cases(Dataset(within.name, within.catalog, bought))
        if cases:
            rankers = {report.head: artifact_scorer(model), **self.baselines(within, cases)}
            results = evaluate_next_item(rankers, cases, model.catalog, self)
            report.metrics.update(flat_metrics(results, report.head, "purchase"))
        return report


NONE = np.zeros(0, dtype=np.int64)


def _out_of_stock(catalog: Catalog) -> np.ndarray:
    """The rows the catalog marks ``in_stock`` "0"/"false"/"no"."""
    stock = catalog.features.get("in_stock") or []
    return np.array([i for i, value in enumerate(stock) if value.strip().lower() in NO], dtype=np.int64)


def _by_category(catalog: Catalog) -> dict[str, np.ndarray]:
    """Each ``category`` value's rows (an item without the feature has category "")."""
    categories = np.array(catalog.features.get("category", [""] * len(catalog)), dtype=object)
    values, codes = np.unique(categories, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(values) + 1))
    return {value: order[bounds[i] : bounds[i + 1]].astype(np.int64) for i, value in enumerate(values)}


@hookimpl
def register_domains(register):
    register(RetailDomain)
