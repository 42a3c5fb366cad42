"""The rules as forbidden rows (``Domain.forbidden``, ``Exclusions``): the names they give,
the older mask hook (``apply_rules``) turned into rows, and served answers equal to the
whole catalog's scores masked and ranked, with and without candidate lists, the catalog
scored at once or in slices."""

import asyncio
import random

import numpy as np
import pytest
import torch

from temporec import Domain, Exclusions, Head, HeadOutput, hookimpl
from temporec.contract.options import read_options
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Event, Query
from temporec.model.artifacts import Manifest, load_model, save_model
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.serving import batching
from temporec.serving.service import RecommenderService
from temporec_plugins.domains.retail import RetailDomain

N_ITEMS, DIM = 300, 8
CATEGORIES = ("food", "wear", "home", "toys")
CATALOG = Catalog(
    [f"i{j}" for j in range(N_ITEMS)],
    [""] * N_ITEMS,
    {
        "category": [CATEGORIES[j % 4] for j in range(N_ITEMS)],
        "in_stock": ["0" if j % 7 == 0 else "1" for j in range(N_ITEMS)],
        "durable": ["0" if j % 5 == 0 else "1" for j in range(N_ITEMS)],
    },
)


class LastHead(Head):
    name = "last"

    def __init__(self, dim, max_len, **options):
        super().__init__(dim, max_len, **options)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, events, mask):
        return HeadOutput(self.proj(events))


class MaskOnlyShop(Domain):
    """A plugin written for the older hook: it clears a mask and names its rules."""

    name = "maskshop"
    actions = RetailDomain.actions
    default_head = "last"

    def load_dataset(self, path):
        raise ValueError("not used in these tests")

    def apply_rules(self, query, history, catalog, allowed):
        rules = super().apply_rules(query, history, catalog, allowed)
        multiples = torch.arange(0, len(catalog), 3)
        if allowed[multiples].any():
            allowed[multiples] = False
            rules.append("no_multiples_of_three")
        return rules


class Plugin:
    @hookimpl
    def register_heads(self, register):
        register(LastHead)

    @hookimpl
    def register_domains(self, register):
        register(RetailDomain)
        register(MaskOnlyShop)


def query(domain: type[Domain], history, candidates=(), allow_repeats=False, k=10, **options) -> Query:
    q = Query(domain.name, history, k=k, candidates=list(candidates), allow_repeats=allow_repeats)
    q.options = options or None
    q.options = read_options(q, domain.request_options)
    return q


def history_rows(q: Query) -> list[int]:
    return [CATALOG.index[e.item_id] for e in q.history]


def masked(domain: Domain, q: Query) -> tuple[list[str], list[str]]:
    """The mask path, as the service ran it before ``forbidden``: the allowed items, the rules."""
    allowed = torch.ones(N_ITEMS, dtype=torch.bool)
    if q.candidates:
        allowed[:] = False
        allowed[[CATALOG.index[c] for c in q.candidates]] = True
    rules = domain.apply_rules(q, history_rows(q), CATALOG, allowed)
    return [CATALOG.item_ids[i] for i in allowed.nonzero().squeeze(1).tolist()], rules


def by_rows(domain: Domain, q: Query) -> tuple[list[str], list[str]]:
    """The same from ``forbidden``'s rows."""
    forbidden = domain.forbidden(q, history_rows(q), CATALOG)
    pool = set(range(N_ITEMS)) if not q.candidates else {CATALOG.index[c] for c in q.candidates}
    if forbidden.only is not None:
        pool &= set(forbidden.only.tolist())
    kept = sorted(pool - set(forbidden.items.tolist()))
    return [CATALOG.item_ids[i] for i in kept], forbidden.rules


BOUGHT = [Event("i1", "purchase", 1), Event("i5", "purchase", 2), Event("i2", "cart", 3), Event("i9", "view", 4)]
CASES = [
    dict(history=BOUGHT),
    dict(history=BOUGHT, allow_repeats=True),
    dict(history=BOUGHT, remind_cart="false", exclude_item_ids="i3,i4"),
    dict(history=BOUGHT, categories="food,toys"),
    dict(history=BOUGHT, categories="food", out_of_stock="i4,i8"),
    dict(history=BOUGHT, candidates=["i1", "i2", "i3", "i7", "i14", "i20"]),
    dict(history=BOUGHT, candidates=["i3", "i6"], categories="wear"),
    dict(history=BOUGHT, candidates=["i7", "i14"]),  # nothing left: both out of stock
    dict(history=BOUGHT, categories="nothing-has-it"),
]


@pytest.mark.parametrize("case", CASES)
def test_retail_rows_and_rule_names_equal_the_mask_path(case):
    q = query(RetailDomain, **case)
    assert by_rows(RetailDomain(), q) == masked(RetailDomain(), q)


def test_a_rule_is_named_only_when_it_removes_something_still_allowed():
    q = query(RetailDomain, [], candidates=["i1", "i2"])
    rules = Exclusions(q, CATALOG)
    rules.exclude("outside_the_candidates", [5, 6])
    rules.exclude("first", [1])
    rules.exclude("again", [1])
    rules.keep_only("keeps_what_is_left", [2, 3])
    rules.keep_only("removes_the_last", [3])
    forbidden = rules.result()
    assert forbidden.rules == ["first", "removes_the_last"]
    assert forbidden.items.tolist() == [1] and forbidden.only.tolist() == [3]


def test_a_plugin_with_only_apply_rules_gets_its_mask_as_rows():
    domain = MaskOnlyShop()
    q = query(MaskOnlyShop, [Event("i1", "view"), Event("i4", "view")])
    forbidden = domain.forbidden(q, history_rows(q), CATALOG)
    assert forbidden.rules == ["exclude_history", "no_multiples_of_three"]
    assert forbidden.items.tolist() == sorted({1, 4, *range(0, N_ITEMS, 3)}) and forbidden.only is None
    listed = query(MaskOnlyShop, q.history, candidates=["i1", "i2", "i3"])
    forbidden = domain.forbidden(listed, history_rows(listed), CATALOG)
    assert forbidden.items.tolist() == [1, 3]  # among the candidates only
    assert by_rows(domain, listed) == masked(domain, listed) == (["i2"], forbidden.rules)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served retail model and a mask-only one over the same catalog, and the artifact."""
    root = tmp_path_factory.mktemp("forbidden-models")
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(N_ITEMS, DIM), dim=1)
    popularity = torch.rand(N_ITEMS)
    paths = {}
    for domain in (RetailDomain, MaskOnlyShop):
        model = SequenceRecommender(LastHead(DIM, 20), text, n_actions=len(domain.actions))
        manifest = Manifest(domain.name, "last", "none", "random", DIM, 20, list(domain.actions), data_fingerprint="f")
        paths[domain.name] = save_model(root, manifest, model, CATALOG, popularity)
    registry = load_registry(extra_plugins={"test": Plugin()}, env={"TEMPOREC_PLUGINS": ""})
    service = RecommenderService(registry, root, device="cpu")
    asyncio.run(service.start())
    yield service, {name: load_model(path, registry.heads) for name, path in paths.items()}
    asyncio.run(service.close())


def expected(loaded, domain: Domain, q: Query) -> list[str]:
    """The whole catalog scored, masked as the rules say, and ranked."""
    items, _ = masked(domain, q)
    if not q.history:
        scores = loaded.popularity
    else:
        events = EventBatch.from_histories(
            [history_rows(q)],
            [[loaded.manifest.actions.index(e.action) for e in q.history]],
            [[e.timestamp for e in q.history]],
            loaded.manifest.max_len,
        )
        with torch.inference_mode():
            scores = loaded.model.scores(events)[0]
    allowed = np.array([CATALOG.index[i] for i in items], dtype=np.int64)
    order = allowed[np.argsort(-scores[allowed].numpy(), kind="stable")]
    return [CATALOG.item_ids[i] for i in order[: q.k]]


@pytest.mark.parametrize("slice_rows", [batching.SCORE_SLICE, 64, 7])
def test_served_answers_equal_the_masked_catalog_ranked_batched_or_not(served, slice_rows, monkeypatch):
    """Also with the catalog scored in slices (a large catalog's way): of 64 rows, the last
    of 44, and of 7, fewer than the k asked for."""
    monkeypatch.setattr(batching, "SCORE_SLICE", slice_rows)
    service, loaded = served
    queries = [query(RetailDomain, **case) for case in CASES]
    queries += [query(RetailDomain, [], categories="home"), query(RetailDomain, [], candidates=["i3", "i9", "i12"])]
    random.Random(0).shuffle(queries)

    async def together():
        return await asyncio.gather(*(service.recommend(q) for q in queries))

    for answers in (asyncio.run(together()), [asyncio.run(service.recommend(q)) for q in queries]):
        for q, answer in zip(queries, answers):
            assert [item.item_id for item in answer.items] == expected(loaded["retail"], RetailDomain(), q)
            assert answer.rules_applied == masked(RetailDomain(), q)[1]


def test_a_served_mask_only_plugin_answers_as_before(served):
    service, loaded = served
    for q in (
        query(MaskOnlyShop, [Event("i1", "view", 1)]),
        query(MaskOnlyShop, [Event("i1", "view", 1)], candidates=["i1", "i2", "i3", "i4", "i5"]),
    ):
        answer = asyncio.run(service.recommend(q))
        assert [item.item_id for item in answer.items] == expected(loaded["maskshop"], MaskOnlyShop(), q)
        assert answer.rules_applied == ["exclude_history", "no_multiples_of_three"]
