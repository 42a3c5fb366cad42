"""The transport-independent core, with a small in-process head and domain."""

import asyncio
import threading

import pytest
import torch

from conftest import TinyEncoder
from temporec import Domain, Head, HeadOutput, hookimpl
from temporec.contract.errors import (
    InvalidArgument,
    NotFound,
    PluginError,
    ResourceExhausted,
)
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Event, Query
from temporec.model.artifacts import Manifest, save_model
from temporec.model.recommender import SequenceRecommender
from temporec.serving.service import RecommenderService

N_ITEMS, TEXT_DIM, DIM = 12, 8, 8


class NextHead(Head):
    """Predicts from the last event only (a first-order Markov head)."""

    name = "next"

    def __init__(self, dim, max_len, **options):
        super().__init__(dim, max_len, **options)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, events, mask):
        return HeadOutput(self.proj(events))


class BrokenHead(NextHead):
    name = "broken"

    def forward(self, events, mask):
        raise RuntimeError("boom")


class ShopDomain(Domain):
    name = "shop"
    actions = ("view", "buy")
    default_head = "next"

    def load_dataset(self, path):
        raise ValueError("not used in these tests")


class Plugin:
    @hookimpl
    def register_heads(self, register):
        register(NextHead)
        register(BrokenHead)

    @hookimpl
    def register_domains(self, register):
        register(ShopDomain)


def make_artifact(root, head_cls):
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(N_ITEMS, TEXT_DIM), dim=1)
    model = SequenceRecommender(head_cls(DIM, 20), text, n_actions=2)
    catalog = Catalog([f"i{j}" for j in range(N_ITEMS)], [f"item {j}" for j in range(N_ITEMS)])
    manifest = Manifest(
        "shop", head_cls.name, "none", "random", DIM, 20, list(ShopDomain.actions), data_fingerprint="abc"
    )
    popularity = torch.arange(N_ITEMS, dtype=torch.float)
    return save_model(root, manifest, model, catalog, popularity)


@pytest.fixture
def service(tmp_path):
    registry = load_registry(extra_plugins={"test": Plugin()}, env={"TEMPOREC_PLUGINS": ""})
    make_artifact(tmp_path, NextHead)
    make_artifact(tmp_path, BrokenHead)
    svc = RecommenderService(registry, tmp_path, device="cpu")
    asyncio.run(svc.start())
    return svc


def recommend(service, **fields):
    query = Query(domain="shop", **fields)
    return asyncio.run(service.recommend(query, timeout=10))


def test_recommends_top_k_without_history_items(service):
    history = [Event("i1", "view", 10), Event("i2", "buy", 20)]
    result = recommend(service, history=history, k=5)
    ids = [item.item_id for item in result.items]
    assert len(ids) == 5 and not {"i1", "i2"} & set(ids)
    assert [i.score for i in result.items] == sorted((i.score for i in result.items), reverse=True)
    assert result.head == "next" and result.rules_applied == ["exclude_history"]
    assert {"encode", "rules", "head", "score"} <= set(result.timings_ms)


def test_batched_scores_equal_single(service):
    histories = [[Event(f"i{j}", "view")] for j in range(6)]

    async def many():
        return await asyncio.gather(*(service.recommend(Query("shop", h, k=3, allow_repeats=True)) for h in histories))

    together = asyncio.run(many())
    alone = [recommend(service, history=h, k=3, allow_repeats=True) for h in histories]
    for a, b in zip(together, alone):
        assert [i.item_id for i in a.items] == [i.item_id for i in b.items]
        assert [i.score for i in a.items] == pytest.approx([i.score for i in b.items], abs=1e-5)


def test_empty_history_is_cold_start_popularity(service):
    result = recommend(service, history=[], k=3)
    assert result.cold_start and [i.item_id for i in result.items] == ["i11", "i10", "i9"]


def test_candidates_limit_the_answer(service):
    result = recommend(service, history=[Event("i1")], candidates=["i3", "i4"], k=10)
    assert {i.item_id for i in result.items} == {"i3", "i4"} and result.candidate_source == "request"


@pytest.mark.parametrize(
    "fields, error, words",
    [
        ({"k": 0}, InvalidArgument, "k"),
        ({"k": 10**6}, ResourceExhausted, "limits.max_k"),
        ({"history": [Event("nope")]}, NotFound, "history[0].item_id"),
        ({"history": [Event("i1", "dance")]}, InvalidArgument, "'buy', 'view'"),
        ({"history": [Event("i1", "view", 5), Event("i2", "view", 4)]}, InvalidArgument, "oldest first"),
        ({"candidates": ["zz"]}, NotFound, "candidate_item_ids"),
        ({"head": "gru"}, NotFound, "installed heads"),
    ],
)
def test_bad_queries_name_the_field(service, fields, error, words):
    fields = {"history": [Event("i1")], **fields}
    with pytest.raises(error, match=None) as caught:
        recommend(service, **fields)
    assert words in str(caught.value)


def test_unknown_domain_lists_known_ones(service):
    with pytest.raises(NotFound, match="known domains: 'shop'"):
        asyncio.run(service.recommend(Query("books", [Event("i1")])))


def test_failing_head_is_a_plugin_error_and_others_keep_working(service):
    with pytest.raises(PluginError, match="boom"):
        recommend(service, history=[Event("i1")], head="broken")
    assert recommend(service, history=[Event("i1")], k=2).items


class CountingEncoder:
    """Registers two encoders of the same vector space; counts which one embeds."""

    calls: dict[str, int] = {}

    @staticmethod
    def make(encoder_name):
        from temporec import Encoder

        class Same(Encoder):
            name = encoder_name
            model_id = "same-space"
            dim = TEXT_DIM

            def encode(self, texts):
                CountingEncoder.calls[self.name] = CountingEncoder.calls.get(self.name, 0) + 1
                return torch.nn.functional.normalize(torch.ones(len(texts), TEXT_DIM), dim=1)

        return Same

    @hookimpl
    def register_encoders(self, register):
        register(self.make("trained"))
        register(self.make("serving"))


def test_encoder_substitutes_serve_a_model_through_another_encoder(tmp_path):
    registry = load_registry(extra_plugins={"test": Plugin(), "enc": CountingEncoder()}, env={"TEMPOREC_PLUGINS": ""})
    path = make_artifact(tmp_path, NextHead)
    manifest = (path / "manifest.json").read_text().replace('"encoder": "none"', '"encoder": "trained"')
    manifest = manifest.replace('"encoder_model_id": "random"', '"encoder_model_id": "same-space"')
    (path / "manifest.json").write_text(manifest)
    svc = RecommenderService(registry, tmp_path, encoder_substitutes={"trained": "serving"}, device="cpu")
    asyncio.run(svc.start())
    CountingEncoder.calls.clear()
    result = asyncio.run(svc.recommend(Query("shop", [Event("", "view", text="a new gadget")], k=2, encoder="serving")))
    assert result.encoder == "serving" and len(result.items) == 2
    assert CountingEncoder.calls == {"serving": 1}
    assert [m.encoder for m in svc.components().models] == ["serving"]


class SlowStartEncoder(TinyEncoder):
    """Takes until ``opened`` is set to start; counts its instances."""

    name = "slow-start"
    opened = threading.Event()
    started = 0

    def __init__(self):
        self.opened.wait(timeout=30)
        type(self).started += 1


def test_an_encoder_load_outlives_calls_that_give_up_and_happens_once():
    class SlowPlugin:
        @hookimpl
        def register_encoders(self, register):
            register(SlowStartEncoder)

    registry = load_registry(extra_plugins={"slow": SlowPlugin()}, env={"TEMPOREC_PLUGINS": ""})
    service = RecommenderService(registry, None, device="cpu")
    SlowStartEncoder.opened.clear()

    async def scenario():
        for _ in range(3):  # each gives up while the encoder is still loading
            with pytest.raises(asyncio.TimeoutError):
                await service.encode(["a"], "slow-start", timeout=0.05)
        SlowStartEncoder.opened.set()
        _, vectors = await service.encode(["a"], "slow-start", timeout=30)
        return vectors

    try:
        assert asyncio.run(scenario()).shape == (1, SlowStartEncoder.dim)
    finally:
        SlowStartEncoder.opened.set()
    assert SlowStartEncoder.started == 1
