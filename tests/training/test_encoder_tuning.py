"""Tuning the language model in training (``--tuning lora`` and ``top``): the real bundled
all-MiniLM-L6-v2 on small generated MovieLens-style files, through ``temporec train``, the
saved artifact, the ``local`` encoder on its tuned model, and a real service."""

import asyncio
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from conftest import TinyEncoder, run_command, write_ml100k
from temporec.cli import train as train_command
from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.contract.registry import load_registry
from temporec.contract.types import Event, Query
from temporec.model.artifacts import ENCODER_DIR, compact_artifact, load_model, read_manifest
from temporec.model.pretrained import bundled_model_dir
from temporec.model.tuned_encoder import TunedEncoder
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig, train_request
from temporec.training.encoder_tuning import check_tuning, tuned_encoder

TEXT_LENGTH = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("ml100k"))


@pytest.fixture(scope="module")
def tuned_models(data, tmp_path_factory):
    """One artifact per mode, trained by the command (2 epochs, a fast encoder rate)."""
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for mode in ("lora", "top"):
        argv = ["train", "--data", str(data), "--out", str(root / mode), "--tuning", mode, "--epochs", "2",
                "--dim", "16", "--max-len", "8", "--text-max-length", str(TEXT_LENGTH), "--encoder-lr", "1e-3",
                "--device", "cpu", "--threads", "1"]  # fmt: skip
        assert run_command(train_command, argv) == 0
        paths[mode] = next((root / mode).glob("video-lstm-*"))
    return paths


@pytest.mark.parametrize(
    "mode, tuned_layers",
    [("lora", ("attention.self.query.weight", "attention.self.value.weight")), ("top", ("encoder.layer.5.",))],
)
def test_tuning_changes_the_encoder_and_the_artifact_reproduces_its_item_vectors(tuned_models, mode, tuned_layers):
    path = tuned_models[mode]
    manifest = read_manifest(path)
    assert manifest.tuned_encoder == {"model": ENCODER_DIR, "max_length": TEXT_LENGTH, "tuning": mode}
    assert manifest.training["tuning"] == mode and f"{ENCODER_DIR}/model.safetensors" in manifest.files
    base = load_file(bundled_model_dir() / "model.safetensors")
    tuned = load_file(path / ENCODER_DIR / "model.safetensors")
    assert set(tuned) <= set(base)  # a plain model: the adapters are merged into its weights
    # Exact on purpose: a weight that training leaves alone is copied, never computed, so it
    # is bit for bit the base model's on any CPU; a tuned one moved by far more than rounding.
    changed = {name for name in tuned if not torch.equal(tuned[name], base[name])}
    assert changed and all(any(part in name for part in tuned_layers) for name in changed), sorted(changed)

    loaded = load_model(path, load_registry().heads)
    local = load_registry().encoders["local"](model=str(path / ENCODER_DIR), max_length=TEXT_LENGTH, device="cpu")
    vectors = local.encode(loaded.catalog.texts)
    assert torch.allclose(vectors, loaded.model.text_embeddings, atol=1e-5)
    untuned = load_registry().encoders["local"](max_length=TEXT_LENGTH, device="cpu").encode(loaded.catalog.texts)
    assert not torch.allclose(vectors, untuned, atol=1e-3)


def test_the_server_embeds_new_texts_with_the_models_own_tuned_encoder(tuned_models, tmp_path):
    path = tuned_models["lora"]
    service = RecommenderService(load_registry(), path.parent, device="cpu")
    asyncio.run(service.start())
    loaded = load_model(path, load_registry().heads)
    text = loaded.catalog.texts[3]
    result = asyncio.run(service.recommend(Query("video", [Event("", "watch", text=text)], k=3)))
    assert len(result.items) == 3 and result.encoder == "local"
    (instance,) = service.encoders.started.values()  # the tuned model, from the artifact
    assert instance.source == str(path / ENCODER_DIR)
    assert torch.allclose(instance.encode([text])[0], loaded.model.text_embeddings[3], atol=1e-5)

    registry = load_registry()
    registry = replace(registry, encoders={**registry.encoders, TinyEncoder.name: TinyEncoder})
    substituted = RecommenderService(
        registry, path.parent, encoder_substitutes={"local": TinyEncoder.name}, device="cpu"
    )
    asyncio.run(substituted.start())
    with pytest.raises(FailedPrecondition, match="tuned its language model in training .'lora'.*cannot stand in"):
        asyncio.run(substituted.recommend(Query("video", [Event("", "watch", text=text)], k=3)))
    with pytest.raises(FailedPrecondition, match="cannot stand in"):  # nor for Encode naming the model
        asyncio.run(substituted.encode([text], model_version=loaded.version))
    _, own = asyncio.run(service.encode([text], model_version=loaded.version))
    assert torch.allclose(own[0], loaded.model.text_embeddings[3], atol=1e-5)
    catalog_only = asyncio.run(substituted.recommend(Query("video", [Event(loaded.catalog.item_ids[0], "watch")], k=3)))
    assert len(catalog_only.items) == 3  # the stored item vectors need no encoder


def test_a_tuned_model_compacts_with_its_language_model(tuned_models, tmp_path):
    """The compact copy carries the tuned model unchanged (the same vector space) and
    serves a text outside the catalog as the full artifact does."""
    path = tuned_models["top"]
    compact = compact_artifact(path, tmp_path, load_registry().heads, "float32")
    full, small = read_manifest(path), read_manifest(compact)
    assert small.tuned_encoder == full.tuned_encoder and small.tuned_encoder_id == full.tuned_encoder_id
    text = load_model(path, load_registry().heads).catalog.texts[3]
    answers = []
    for root, served in ((path.parent, path), (tmp_path, compact)):
        service = RecommenderService(load_registry(), root, device="cpu")
        asyncio.run(service.start())
        answers.append(asyncio.run(service.recommend(Query("video", [Event("", "watch", text=text)], k=5))))
        (instance,) = service.encoders.started.values()
        assert instance.source == str(served / ENCODER_DIR)
        asyncio.run(service.close())
    (full_items, compact_items) = ([(i.item_id, round(i.score, 4)) for i in a.items] for a in answers)
    assert compact_items == full_items


def test_tuning_needs_an_encoder_that_runs_its_model_here_and_layers_it_has():
    with pytest.raises(InvalidArgument, match="encoder 'tiny-hash' does not run in this process"):
        tuned_encoder(TinyEncoder(), TrainConfig(tuning="lora"))
    model = TunedEncoder.load(str(bundled_model_dir()), TEXT_LENGTH)
    with pytest.raises(InvalidArgument, match=r"lora_targets: \['q_proj'\]; this model's linear layers are .*query"):
        model.with_lora(4, 8, ["q_proj"])
    with pytest.raises(InvalidArgument, match="top_layers: 7; this model has 6 layers"):
        model.with_top_layers(7)
    with pytest.raises(InvalidArgument, match="encoder_layers: 7; this model has 6 layers"):
        model.keep_first_layers(7)
    with pytest.raises(InvalidArgument, match="encoder_layers: cuts the language model, .* tuning is 'frozen'"):
        check_tuning(TrainConfig(encoder_layers=3))
    with pytest.raises(InvalidArgument, match=r"config.lr: 0.0; must be above 0"):
        check_tuning(TrainConfig(lr=0.0))
    with pytest.raises(InvalidArgument, match=r"config.encoder_lr: nan; must be at least 0"):
        check_tuning(TrainConfig(tuning="lora", encoder_lr=float("nan")))


@pytest.mark.slow
def test_a_cut_encoder_trains_saves_and_serves_with_its_first_layers_only(data, tmp_path):
    argv = ["train", "--data", str(data), "--out", str(tmp_path), "--tuning", "top", "--top-layers", "1",
            "--encoder-layers", "3", "--epochs", "1", "--dim", "16", "--max-len", "8",
            "--text-max-length", str(TEXT_LENGTH), "--encoder-lr", "1e-3", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert run_command(train_command, argv) == 0
    path = next(tmp_path.glob("video-lstm-*"))
    tuned = load_file(path / ENCODER_DIR / "model.safetensors")
    assert {name.split(".")[2] for name in tuned if name.startswith("encoder.layer.")} == {"0", "1", "2"}
    base = load_file(bundled_model_dir() / "model.safetensors")
    # Exact on purpose, as above: the layers kept but not tuned are copied, never computed.
    changed = {name for name in tuned if not torch.equal(tuned[name], base[name])}
    assert changed and all(name.startswith("encoder.layer.2.") for name in changed), sorted(changed)
    loaded = load_model(path, load_registry().heads)
    local = load_registry().encoders["local"](model=str(path / ENCODER_DIR), max_length=TEXT_LENGTH, device="cpu")
    assert torch.allclose(local.encode(loaded.catalog.texts), loaded.model.text_embeddings, atol=1e-5)


def test_tuned_encoder_vectors_are_the_local_encoders():
    """Before any training, the tuned encoder embeds as the local encoder does."""
    texts = ["A mystery in Paris", "Cartoon about talking toys", "x"]
    tuned = TunedEncoder.load(str(bundled_model_dir()), TEXT_LENGTH)
    local = load_registry().encoders["local"](max_length=TEXT_LENGTH, device="cpu")
    assert torch.allclose(tuned.embed(tuned.tokenize(texts)), local.encode(texts), atol=1e-5)


def test_gradient_checkpointing_computes_the_same_gradients():
    """Recomputed activations (``--gradient-checkpointing``) give the gradients kept ones do."""
    texts = ["A mystery in Paris", "Cartoon about talking toys", "x"]
    direction = torch.randn(384, generator=torch.Generator().manual_seed(0))
    gradients = []
    for checkpointed in (False, True):
        config = TrainConfig(
            tuning="top", top_layers=2, text_max_length=TEXT_LENGTH, gradient_checkpointing=checkpointed
        )
        encoder = tuned_encoder(load_registry().encoders["local"](device="cpu"), config).train()
        renamed = hasattr(encoder.model, "is_activation_checkpointing")  # transformers 5.x's name
        assert getattr(encoder.model, "is_activation_checkpointing" if renamed else "is_gradient_checkpointing") == (
            checkpointed
        )
        torch.manual_seed(0)  # the same dropout masks: a checkpoint replays the random state
        (encoder(encoder.tokenize(texts)) @ direction).sum().backward()
        gradients.append(torch.cat([p.grad.flatten() for p in encoder.trainable_parameters()]))
    assert gradients[0].abs().max() > 0
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6)


# -- two stages: a tuning run started from a frozen model (TrainConfig.init_from) ------------

SMALL = ["--dim", "16", "--max-len", "8", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def frozen_model(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    assert run_command(train_command, ["train", "--data", str(data), "--out", str(root), "--epochs", "2", *SMALL]) == 0
    return next(root.glob("video-lstm-*"))


def trained_weights(path) -> dict[str, torch.Tensor]:
    """The model's weights but the text embeddings, which a tuning run re-encodes."""
    return {k: v for k, v in load_file(path / "model.safetensors").items() if k != "model.text_embeddings"}


def same_weights(started: dict, saved: dict) -> bool:
    return saved.keys() == started.keys() and all(torch.allclose(saved[k], started[k], atol=1e-12) for k in saved)


NOTHING_LEARNT = ["--lr", "1e-30", "--encoder-lr", "1e-30", "--epochs", "1"]  # steps far below float32's rounding


def test_a_warm_start_competes_with_every_epoch(frozen_model, data, tmp_path):
    argv = ["train", "--data", str(data), "--out", str(tmp_path), "--init-from", str(frozen_model), *NOTHING_LEARNT,
            *SMALL]  # fmt: skip
    assert run_command(train_command, argv) == 0
    path = next(tmp_path.glob("video-lstm-*"))
    manifest = read_manifest(path)
    assert manifest.training["init_from"] == str(frozen_model)
    assert manifest.metrics["best_epoch"] == 0  # the start was scored: an epoch no better does not replace it
    assert same_weights(load_file(frozen_model / "model.safetensors"), load_file(path / "model.safetensors"))


def test_a_tuning_run_starts_from_the_frozen_models_weights(frozen_model, data, tmp_path):
    argv = ["train", "--data", str(data), "--out", str(tmp_path), "--init-from", str(frozen_model),
            "--tuning", "lora", "--text-max-length", str(TEXT_LENGTH), *NOTHING_LEARNT, *SMALL]  # fmt: skip
    assert run_command(train_command, argv) == 0
    path = next(tmp_path.glob("video-lstm-*"))
    assert read_manifest(path).tuned_encoder["tuning"] == "lora"
    assert same_weights(trained_weights(frozen_model), trained_weights(path))


def test_a_warm_start_must_fit_the_run(frozen_model, tuned_models, data, tmp_path):
    registry = load_registry()
    domain, head = registry.domains["video"](), registry.heads["lstm"]
    encoder = registry.encoders["local"](device="cpu")
    config = TrainConfig(dim=32, max_len=8, epochs=1, device="cpu", threads=1, init_from=str(frozen_model))
    request = train_request(domain, str(data), head, encoder, config, tmp_path)
    with pytest.raises(InvalidArgument, match=r"config.init_from: .*do not fit this run's model \(size mismatch"):
        domain.train(request)
    tuned = replace(config, dim=16, init_from=str(tuned_models["lora"]))
    with pytest.raises(InvalidArgument, match="config.init_from: .*a tuned artifact; start from one trained with a"):
        domain.train(replace(request, config=tuned))
    missing = replace(config, dim=16, init_from=str(tmp_path / "nothing"))
    with pytest.raises(InvalidArgument, match="config.init_from: .*nothing"):
        domain.train(replace(request, config=missing))
