"""Composition per request: every installed head trains for every new domain and serves
``Recommend`` for it (one short epoch each: this checks the composition, not quality)."""

import asyncio

import pytest
import torch
from test_domain_customer_service import REPLIES, conversations
from test_domain_news import write_nemig
from test_domain_retail import shop

from conftest import TinyEncoder, TinyPlugin
from temporec.contract.registry import load_registry
from temporec.contract.types import Dataset, Event, Query
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig, train
from temporec_plugins.domains.customer_service.training import (
    embed_texts,
    train_conversations,
    turn_texts,
)
from temporec_plugins.domains.news.reader import load_news

HEADS = ("lstm", "ar", "vae", "hstu")
SHORT = TrainConfig(dim=16, max_len=8, epochs=1, batch_size=8)


@pytest.fixture(scope="module")
def registry():
    return load_registry(extra_plugins={"tiny": TinyPlugin()})


def serve(registry, models, query: Query):
    async def ask():
        service = RecommenderService(registry, models, device="cpu")
        await service.start()
        try:
            return await service.recommend(query)
        finally:
            await service.close()

    return asyncio.run(ask())


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_retail_with_every_head(registry, tmp_path, head):
    data, domain = shop(), registry.domains["retail"]()
    train(
        data,
        registry.heads[head],
        torch.zeros(len(data.catalog), 0),
        domain=domain,
        encoder_name="local",
        encoder_model_id="none",
        out_dir=tmp_path,
        config=domain.training_config(data, SHORT),
    )
    answer = serve(registry, tmp_path, Query("retail", [Event("i0", "purchase")], head=head, k=3))
    assert answer.head == head and len(answer.items) == 3 and answer.rules_applied == ["exclude_purchased"]


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_news_with_every_head(registry, tmp_path, head):
    domain = registry.domains["news"]()
    data = load_news(write_nemig(tmp_path))
    dataset = Dataset(data.name, data.catalog, domain.split(data).train)
    train(
        dataset,
        registry.heads[head],
        TinyEncoder().encode(data.catalog.texts),
        domain=domain,
        encoder_name="tiny-hash",
        encoder_model_id=TinyEncoder.model_id,
        out_dir=tmp_path / "models",
        config=domain.training_config(dataset, SHORT),
    )
    answer = serve(
        registry, tmp_path / "models", Query("news", [Event("n0", "click")], head=head, candidates=["n3", "n4"])
    )
    assert answer.head == head and {item.item_id for item in answer.items} == {"n3", "n4"}


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_customer_service_with_every_head(registry, tmp_path, head):
    data, encoder = conversations(), TinyEncoder()
    vectors = embed_texts(encoder, turn_texts(data), cache_dir=tmp_path / "cache")
    train_conversations(
        data,
        registry.heads[head],
        encoder.encode(REPLIES.texts),
        vectors.__getitem__,
        domain=registry.domains["customer_service"],
        encoder_name="tiny-hash",
        encoder_model_id=encoder.model_id,
        out_dir=tmp_path / "models",
        config=SHORT,
    )
    history = [Event("", "user", 0.0, "a question never seen"), Event("hours", "agent")]
    answer = serve(registry, tmp_path / "models", Query("customer_service", history, head=head, k=4))
    assert answer.head == head and [item.item_id for item in answer.items if item.item_id == "hours"] == []
    assert answer.rules_applied == ["exclude_history"] and len(answer.items) == 3
