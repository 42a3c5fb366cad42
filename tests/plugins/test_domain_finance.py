"""The finance domain: PhraseBank read as one-turn conversations, the classification
metrics and the logistic-regression probe, models trained frozen and with LoRA on the real
bundled all-MiniLM-L6-v2 (a made-up PhraseBank-format file), evaluated by ``temporec eval``
beside the baselines, and served by a real gRPC server."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import SHARED_DATA, run_command
from temporec.cli import evaluate as evaluate_command
from temporec.cli import train as train_command
from temporec.contract.registry import load_registry
from temporec.contract.types import Query
from temporec.data import DataError
from temporec.model.artifacts import ENCODER_DIR, read_manifest
from temporec.model.pretrained import bundled_model_dir
from temporec.training import (
    LogisticRegression,
    TrainConfig,
    classification_metrics,
    lexicon_label,
    tuned_encoder,
    with_intervals,
)
from temporec.training.conversations import train_conversations
from temporec_client import Event, TemporecClient
from temporec_plugins.domains.finance import FinanceDomain, FinanceOptions
from temporec_plugins.domains.finance.domain import majority_label, measured
from temporec_plugins.domains.finance.reader import LABEL_CATALOG, load_phrasebank
from temporec_plugins.heads.lstm import LSTMHead

COMPANIES = ["Nokia", "Fiskars", "Kone", "Outotec", "Stora Enso", "Wartsila", "Elisa", "Orion", "Sampo", "Neste"]
TEMPLATES = {
    "positive": [
        "{} reported record profit and strong sales growth",
        "{} won a large new order and raised its outlook",
    ],
    "negative": ["{} warned of a heavy loss and will cut jobs", "Sales at {} fell sharply and its shares dropped"],
    "neutral": ["{} will publish its interim report on Thursday", "{} has its headquarters in Espoo , Finland"],
}
TEXT_LENGTH = 24


def write_phrasebank(directory) -> str:
    lines = [f"{t.format(c)} .@{label}" for label, ts in TEMPLATES.items() for t in ts for c in COMPANIES]
    path = directory / "Sentences_AllAgree.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def phrasebank(tmp_path_factory) -> str:
    return write_phrasebank(tmp_path_factory.mktemp("phrasebank"))


def train_argv(data: str, out, *flags: str) -> list[str]:
    return ["train", "--domain", "finance", "--data", data, "--out", str(out), "--dim", "16", "--batch-size", "16",
            "--text-max-length", str(TEXT_LENGTH), "--device", "cpu", "--threads", "1", *flags]  # fmt: skip


@pytest.fixture(scope="module")
def models(phrasebank, tmp_path_factory):
    """A frozen and a LoRA model, trained by ``temporec train``, in one models directory."""
    root = tmp_path_factory.mktemp("models")
    frozen = ["--epochs", "30", "--lr", "1e-2"]
    lora = ["--tuning", "lora", "--epochs", "2", "--encoder-lr", "1e-3", "--length-buckets"]
    paths = {}
    for mode, flags in (("frozen", frozen), ("lora", lora)):
        assert run_command(train_command, train_argv(phrasebank, root / mode, *flags)) == 0
        paths[mode] = next((root / mode).glob("finance-lstm-*"))
    return paths


def test_phrasebank_is_read_as_one_turn_conversations_with_labels_as_replies(phrasebank, tmp_path):
    data = load_phrasebank(phrasebank)
    assert data.catalog.item_ids == ["negative", "neutral", "positive"] and data.catalog is LABEL_CATALOG
    assert sum(map(len, (data.train, data.valid, data.test))) == 60 and data.valid and data.test
    first = data.train[0]
    assert [(e.item_id, e.action) for e in first.turns] == [("", "user")] and first.replies[0] in TEMPLATES
    assert load_phrasebank(Path(phrasebank).parent).name == data.name  # a directory means AllAgree
    (tmp_path / "sentences.txt").write_text("x@neutral\n")
    with pytest.raises(DataError, match="Sentences_AllAgree.txt, Sentences_75Agree.txt"):
        load_phrasebank(tmp_path / "sentences.txt")


def test_macro_f1_on_a_case_computed_by_hand():
    true, predicted = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 1, 1, 2, 0])
    metrics = {k: float(v) for k, v in classification_metrics(true, predicted, ["a", "b", "c"]).items()}
    # a: 1 hit, 1 false alarm, 1 miss: 2/4; b: 2 hits, 1 false alarm: 4/5; c: 1 hit, 1 miss: 2/3
    assert metrics["f1_a"] == pytest.approx(0.5) and metrics["f1_b"] == pytest.approx(0.8)
    assert metrics["f1_c"] == pytest.approx(2 / 3) and metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    absent = classification_metrics(torch.tensor([0, 0]), torch.tensor([0, 0]), ["a", "b"])
    assert float(absent["f1_b"]) == 0.0 and float(absent["macro_f1"]) == 0.5  # as scikit-learn's zero_division=0
    intervals = with_intervals(true, predicted, ["a", "b", "c"])
    assert intervals["accuracy_low"] <= intervals["accuracy"] <= intervals["accuracy_high"]
    assert intervals["macro_f1_low"] < intervals["macro_f1_high"]


def test_the_probe_fits_separable_classes_and_chooses_its_l2_on_validation():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 4
    labels = torch.arange(3).repeat(20)
    features = centres[labels] + torch.randn(len(labels), 8, generator=generator)
    train, valid = (features[:45], labels[:45]), (features[45:], labels[45:])
    fitted, l2 = LogisticRegression.chosen_on(train, valid, 3, grid=(1e-2, 1e-1))
    assert (fitted.predict(features[45:]) == labels[45:]).all() and l2 > 0


def test_no_label_is_ever_forbidden_and_no_hand_off_unless_asked():
    domain, allowed = FinanceDomain(), torch.ones(3, dtype=torch.bool)
    query = Query("finance", [], options=FinanceOptions())
    assert domain.apply_rules(query, [2], LABEL_CATALOG, allowed) == [] and allowed.all()
    scores = torch.tensor([0.1, 0.0, 0.2])
    assert domain.hand_off(query, scores, LABEL_CATALOG) is None
    assert domain.hand_off(Query("finance", [], options=FinanceOptions(0.9)), scores, LABEL_CATALOG)


@pytest.mark.slow
def test_lora_tunes_the_encoder_and_the_artifact_carries_it(models):
    manifest = read_manifest(models["lora"])
    assert manifest.tuned_encoder == {"model": ENCODER_DIR, "max_length": TEXT_LENGTH, "tuning": "lora"}
    assert manifest.encoder_model_id.endswith("+lora") and manifest.training["length_buckets"]
    base, tuned = (
        load_file(bundled_model_dir() / "model.safetensors"),
        load_file(models["lora"] / ENCODER_DIR / "model.safetensors"),
    )
    # Exact on purpose: merging adds the adapters to query and value only; every other
    # weight is copied, never computed, so it is bit for bit the base model's on any CPU.
    changed = {name for name in tuned if not torch.equal(tuned[name], base[name])}
    assert changed and all("query" in name or "value" in name for name in changed), sorted(changed)
    assert not read_manifest(models["frozen"]).tuned_encoder


@pytest.mark.slow
def test_eval_reports_accuracy_and_macro_f1_beside_the_baselines(models, phrasebank):
    for mode in ("frozen", "lora"):  # lora: the tuned encoder embeds the test, the base one the probe
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert (
                run_command(evaluate_command, ["eval", "--model", str(models[mode]), "--json", "--device", "cpu"]) == 0
            )
        report = json.loads(out.getvalue())
        metrics = report["metrics"]
        for ranker in ("", "majority.", "lexicon.", "frozen-lr."):
            for name in ("accuracy", "macro_f1", "f1_negative", "f1_neutral", "f1_positive"):
                low, value, high = (metrics[f"{ranker}test.{name}{end}"] for end in ("_low", "", "_high"))
                assert 0 <= low <= value <= high <= 1
        assert report["users"] == len(load_phrasebank(phrasebank).test) and report["same_data_as_training"]
        assert metrics["lexicon.test.accuracy"] == 1.0  # the made-up sentences use its words
        assert metrics["frozen-lr.test.accuracy"] == 1.0 and metrics["frozen-lr.test.l2"] > 0
    assert metrics["majority.test.macro_f1"] < 0.5


@pytest.mark.slow
def test_a_served_model_ranks_the_three_labels_for_a_sentence(models, start_grpc_server):
    sentence = "Kone reported record profit and strong sales growth ."
    with start_grpc_server(load_registry(), models["frozen"].parent, default_encoder="local") as server:
        with TemporecClient(server.target, timeout=60) as client:
            answer = client.recommend("finance", [Event("", "user", text=sentence)], k=3)
    assert sorted(item.item_id for item in answer.items) == ["negative", "neutral", "positive"]
    scores = torch.tensor([item.score for item in answer.items])
    assert (scores[:-1] >= scores[1:]).all() and answer.items[0].item_id == "positive"
    assert answer.hand_off is None  # finance decides none unless a request sets a threshold


@pytest.mark.slow
def test_the_served_tuned_encoder_gives_the_turn_vectors_training_computed(phrasebank, tmp_path, start_grpc_server):
    """Training's last turn vectors (the merged encoder's, which the test metrics read) are
    what the server's tuned encoder computes for the same texts."""
    config = TrainConfig(
        dim=16, epochs=1, batch_size=16, tuning="lora", encoder_lr=1e-3, text_max_length=TEXT_LENGTH, device="cpu"
    )
    encoder = tuned_encoder(load_registry().encoders["local"](device="cpu"), config)
    data = load_phrasebank(phrasebank)
    path = train_conversations(
        data,
        LSTMHead,
        torch.zeros(3, encoder.dim),
        None,
        domain=FinanceDomain(),
        encoder_name="local",
        encoder_model_id="sentence-transformers/all-MiniLM-L6-v2",
        out_dir=tmp_path,
        config=config,
        text_encoder=encoder,
    )
    texts = [c.turns[0].text for c in data.test]
    trained = encoder.embed(encoder.tokenize(texts))  # the merged model training ended with
    with start_grpc_server(load_registry(), tmp_path, default_encoder="local") as server:
        with TemporecClient(server.target, timeout=60) as client:
            served = client.encode(texts, model_version=read_manifest(path).version)
            answer = client.recommend("finance", [Event("", "user", text=texts[0])], k=3)
    assert torch.allclose(torch.tensor(served.vectors), trained, atol=1e-5)
    assert len(answer.items) == 3


@pytest.mark.skipif(
    not (SHARED_DATA / "financial-phrasebank").is_dir(), reason="needs ../shared/data/financial-phrasebank"
)
def test_the_baselines_on_the_real_all_agree_split():
    data = load_phrasebank(SHARED_DATA / "financial-phrasebank" / "Sentences_AllAgree.txt")
    assert (len(data.train), len(data.valid), len(data.test)) == (1787, 228, 244)
    truth = [c.replies[0] for c in data.test]
    assert majority_label(data) == "neutral"
    assert measured(truth, ["neutral"] * len(truth))["accuracy"] == pytest.approx(0.5984, abs=1e-4)
    lexicon = measured(truth, [lexicon_label(c.turns[0].text) for c in data.test])
    assert lexicon["accuracy"] == pytest.approx(0.8320, abs=1e-4)
    assert lexicon["macro_f1"] == pytest.approx(0.7687, abs=1e-4)
