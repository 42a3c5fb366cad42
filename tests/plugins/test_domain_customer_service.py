"""The customer-service domain: replies already sent, the hand-off to a human, the
conversation trainer, and a trained model served on a conversation known only by text."""

import asyncio

import pytest
import torch

import temporec_plugins.domains.customer_service as cs_plugin
import temporec_plugins.heads.lstm as lstm_plugin
from conftest import TinyEncoder, TinyPlugin
from temporec.contract.errors import InvalidArgument
from temporec.contract.options import read_options
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Event, Query
from temporec.model.artifacts import load_model, read_manifest
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig
from temporec.training.protocols import evaluate_replies, model_scorer
from temporec_plugins.domains.customer_service import CustomerServiceDomain, CustomerServiceOptions
from temporec_plugins.domains.customer_service.reader import (
    Conversation,
    ConversationData,
)
from temporec_plugins.domains.customer_service.training import (
    embed_texts,
    reply_cases,
    train_conversations,
    turn_texts,
)
from temporec_plugins.heads.lstm import LSTMHead

REPLIES = Catalog(
    ["reset", "refund", "hours", "human"],
    ["Reset your password", "Refunds take 5 days", "We open at 9", "Let me connect you"],
)
ASKS = {
    "reset": ["I forgot my password", "cannot log in", "locked out of my account"],
    "refund": ["I want my money back", "where is my refund", "return this order"],
    "hours": ["when do you open", "opening times please", "are you open on sunday"],
}


def user(text: str) -> Event:
    return Event("", "user", 0.0, text)


def conversations() -> ConversationData:
    """Every phrasing of every request, in all three splits (a greeting first in half)."""
    splits = {"train": [], "valid": [], "test": []}
    for reply, phrasings in ASKS.items():
        for n, text in enumerate(phrasings):
            for split in splits:
                turns = [user("hello"), user(text)] if n % 2 else [user(text)]
                splits[split].append(Conversation(f"{split}-{reply}-{n}", turns, [reply]))
    for _ in range(3):  # a popular reply, to show the model does not just learn popularity
        splits["train"].append(Conversation("pop", [user("hi there")], ["human"]))
    return ConversationData("chats", REPLIES, splits["train"], splits["valid"], splits["test"])


def rules_after(history, **options):
    query = Query("customer_service", history, options=options or None)
    query.options = read_options(query, CustomerServiceDomain.request_options)  # as the service hands them over
    allowed = torch.ones(len(REPLIES), dtype=torch.bool)
    indices = [REPLIES.index[e.item_id] for e in history if e.item_id]
    rules = CustomerServiceDomain().apply_rules(query, indices, REPLIES, allowed)
    return [item for item, ok in zip(REPLIES.item_ids, allowed.tolist()) if ok], rules


def test_replies_already_sent_and_excluded_ones_are_not_proposed():
    history = [user("cannot log in"), Event("reset", "agent"), user("still locked")]
    assert rules_after(history) == (["refund", "hours", "human"], ["exclude_history"])
    assert rules_after(history, exclude_item_ids="human") == (
        ["refund", "hours"],
        ["exclude_history", "exclude_filtered"],
    )


def test_low_confidence_hands_the_conversation_to_a_human():
    domain = CustomerServiceDomain()
    sure, unsure = torch.tensor([8.0, 0.0, 0.0, float("-inf")]), torch.tensor([1.0, 0.9, 0.8, 0.7])
    defaults = Query("customer_service", [], options=CustomerServiceOptions())
    assert domain.confidence(sure) > 0.99 and not domain.hand_off(defaults, sure)
    assert domain.hand_off(defaults, unsure)
    strict = Query("customer_service", [], options={"handoff_threshold": "0.9999"})
    strict.options = read_options(strict, CustomerServiceOptions)  # as the service hands them over
    assert domain.hand_off(strict, sure)


def test_answers_to_the_same_question_share_their_confidence():
    catalog = Catalog(["a1", "a2", "b1"], ["A", "A too", "B"], {"thread": ["a", "a", "b"]})
    scores = torch.tensor([[1.0, 1.0, 0.0]])
    split = CustomerServiceDomain.confidence(scores)
    together = CustomerServiceDomain.confidence(scores, catalog)
    assert split.item() == pytest.approx(torch.e / (2 * torch.e + 1))
    assert together.item() == pytest.approx(2 * torch.e / (2 * torch.e + 1))


def test_the_trainer_refuses_a_model_without_text(tmp_path):
    with pytest.raises(InvalidArgument, match="conversations are text"):
        train_conversations(
            conversations(),
            LSTMHead,
            torch.zeros(4, 8),
            lambda text: torch.zeros(8),
            domain=CustomerServiceDomain,
            encoder_name="tiny-hash",
            encoder_model_id="x",
            out_dir=tmp_path,
            config=TrainConfig(use_text=False),
        )


def test_the_training_conversations_end_with_their_reply():
    dataset = conversations().as_dataset()
    events = dataset.sequences["train-reset-1"]
    assert [(e.action, e.item_id, e.text) for e in events] == [
        ("user", "", "hello"),
        ("user", "", "cannot log in"),
        ("agent", "reset", ""),
    ]


@pytest.mark.slow
def test_a_trained_model_beats_popularity_and_is_served_on_text_turns(tmp_path):
    data, encoder, domain = conversations(), TinyEncoder(), CustomerServiceDomain()
    vectors = embed_texts(encoder, turn_texts(data), cache_dir=tmp_path / "cache")
    items = encoder.encode(REPLIES.texts)
    config = TrainConfig(dim=16, max_len=8, epochs=60, patience=60, batch_size=4, lr=1e-2, dropout=0.0)
    path = train_conversations(
        data,
        LSTMHead,
        items,
        vectors.__getitem__,
        domain=domain,
        encoder_name="tiny-hash",
        encoder_model_id=encoder.model_id,
        out_dir=tmp_path / "models",
        config=config,
    )
    manifest = read_manifest(path)
    assert manifest.domain == "customer_service" and manifest.use_text and manifest.metrics["test.accuracy@1"] == 1.0

    loaded = load_model(path, {"lstm": LSTMHead})
    rankers = domain.baselines(data, items, vectors.__getitem__)
    rankers["lstm"] = model_scorer(loaded.model, REPLIES, manifest.actions, 8, loaded.popularity, vectors.__getitem__)
    results = evaluate_replies(rankers, reply_cases(data.test), REPLIES)
    assert results["lstm"]["accuracy@1"] == 1.0 > results["popularity"]["accuracy@1"]

    plugins = {"tiny": TinyPlugin(), "customer_service": cs_plugin, "lstm": lstm_plugin}
    registry = load_registry(extra_plugins=plugins, env={"TEMPOREC_PLUGINS": ""})
    history = [user("hello"), user("where is my refund")]

    async def ask():
        service = RecommenderService(registry, tmp_path / "models", device="cpu")
        await service.start()
        try:
            return await service.recommend(Query("customer_service", history, k=2))
        finally:
            await service.close()

    answer = asyncio.run(ask())
    assert answer.encoder == "tiny-hash" and [item.item_id for item in answer.items][0] == "refund"


@pytest.mark.slow
def test_lora_tunes_the_encoder_on_multi_turn_conversations_and_the_server_runs_it(tmp_path):
    """Conversations of one and two turns (a greeting first): every turn is re-encoded by
    the tuned encoder in training, and the served model embeds them as training last did."""
    from temporec.model.artifacts import ENCODER_DIR
    from temporec.training import tuned_encoder

    registry = load_registry()
    config = TrainConfig(dim=16, max_len=8, epochs=1, batch_size=4, tuning="lora", text_max_length=16, device="cpu")
    encoder = tuned_encoder(registry.encoders["local"](device="cpu"), config)
    data = conversations()
    path = train_conversations(
        data,
        LSTMHead,
        torch.zeros(len(REPLIES), encoder.dim),
        None,
        domain=CustomerServiceDomain(),
        encoder_name="local",
        encoder_model_id="sentence-transformers/all-MiniLM-L6-v2",
        out_dir=tmp_path,
        config=config,
        text_encoder=encoder,
    )
    manifest = read_manifest(path)
    assert manifest.tuned_encoder["tuning"] == "lora" and manifest.encoder_model_id.endswith("+lora")
    assert (path / ENCODER_DIR / "model.safetensors").is_file()
    loaded = load_model(path, registry.heads)
    assert torch.allclose(loaded.model.text_embeddings, encoder.embed(encoder.tokenize(REPLIES.texts)), atol=1e-5)
    history = [user("hello"), user("where is my refund")]

    async def ask():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()
        try:
            answer = await service.recommend(Query("customer_service", history, k=4))
            _, vectors = await service.encode([e.text for e in history], model_version=manifest.version)
            return answer, vectors
        finally:
            await service.close()

    answer, vectors = asyncio.run(ask())
    assert len(answer.items) == 4
    assert torch.allclose(vectors, encoder.embed(encoder.tokenize([e.text for e in history])), atol=1e-5)


def test_a_conversation_model_starts_from_a_trained_one(tmp_path):
    """``init_from``: the second run starts from the first one's weights, which compete with
    its epochs (here an epoch that learns nothing: the start is what it saves)."""
    from safetensors.torch import load_file

    data, encoder = conversations(), TinyEncoder()
    vectors = embed_texts(encoder, turn_texts(data), cache_dir=tmp_path / "cache")

    def trained(out, **fields):
        config = TrainConfig(
            **{"dim": 16, "max_len": 8, "epochs": 3, "batch_size": 4, "lr": 1e-2, "device": "cpu", **fields}
        )
        return train_conversations(
            data, LSTMHead, encoder.encode(REPLIES.texts), vectors.__getitem__, domain=CustomerServiceDomain(),
            encoder_name="tiny-hash", encoder_model_id=encoder.model_id, out_dir=tmp_path / out, config=config,
        )  # fmt: skip

    first = trained("first")
    second = trained("second", init_from=str(first), epochs=1)
    nothing = trained("nothing", init_from=str(first), epochs=1, lr=1e-30)
    assert read_manifest(nothing).metrics["best_epoch"] == 0
    started, saved = load_file(first / "model.safetensors"), load_file(nothing / "model.safetensors")
    assert all(torch.allclose(saved[k], started[k], atol=1e-12) for k in started)
    assert read_manifest(second).training["init_from"] == str(first)
    with pytest.raises(InvalidArgument, match="config.init_from: .*do not fit this run's model"):
        trained("wider", init_from=str(first), dim=32)
