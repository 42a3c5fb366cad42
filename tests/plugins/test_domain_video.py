"""The video domain plugin and the train/eval commands, on generated MovieLens-100k-style
files (the train command with the real local encoder is marked slow)."""

import json
from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA, run_command, write_ml100k
from temporec.cli import evaluate as eval_command
from temporec.cli import train as train_command
from temporec.contract.errors import InvalidArgument
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Query
from temporec.data import k_core
from temporec.model.artifacts import compact_artifact, read_manifest
from temporec.training import TrainConfig, train
from temporec_plugins.domains.video import VideoDomain
from temporec_plugins.heads.lstm import LSTMHead

ML1M = SHARED_DATA / "ml-1m"


def test_plugins_register_the_video_domain_and_lstm_head():
    registry = load_registry()
    assert registry.domains["video"] is VideoDomain
    assert registry.heads["lstm"] is LSTMHead
    assert VideoDomain.actions[0] == "watch" and VideoDomain.default_head == "lstm"


def test_video_domain_reads_movielens_and_trains_on_its_five_core_unless_told_otherwise(tmp_path):
    dataset = VideoDomain().load_dataset(str(write_ml100k(tmp_path)))
    assert len(dataset.catalog) == 21 and "99" in dataset.catalog.index
    assert dataset.catalog.texts[0] == "Movie 1 (1981). Genres: Adventure"
    assert VideoDomain().training_config(dataset, TrainConfig()).min_interactions == 5
    assert VideoDomain().training_config(dataset, TrainConfig(min_interactions=0)).min_interactions == 0
    core = k_core(dataset, 5)
    assert len(core.catalog) == 20 and "99" not in core.catalog.index
    assert len(core.sequences) == 40 and all(len(events) == 8 for events in core.sequences.values())


def test_train_and_eval_commands_keep_the_chosen_core(tmp_path, capsys):
    """The default 5-core drops movie 99 (seen twice); --min-interactions 0 keeps it, and
    eval filters the data as its model's training did, so it reads as the training data."""
    data = write_ml100k(tmp_path)
    common = ["train", "--data", str(data), "--no-text", "--epochs", "1", "--dim", "8", "--max-len", "8"]
    for flags, k, items in (([], 5, 20), (["--min-interactions", "0"], 0, 21)):
        assert run_command(train_command, [*common, "--out", str(tmp_path / f"core-{k}"), *flags]) == 0
        path = capsys.readouterr().out.strip().splitlines()[-1]
        manifest = read_manifest(path)
        assert manifest.training["min_interactions"] == k
        assert run_command(eval_command, ["eval", "--model", path, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["same_data_as_training"] and report["dropped_events"] == 0
        assert len((Path(path) / "catalog.jsonl").read_text().splitlines()) == items


def test_train_command_refuses_a_negative_core(tmp_path):
    with pytest.raises(InvalidArgument, match="min_interactions: -1; must be at least 0"):
        argv = ["train", "--data", str(write_ml100k(tmp_path)), "--no-text", "--min-interactions", "-1"]
        run_command(train_command, [*argv, "--out", str(tmp_path / "models")])


def test_watched_titles_are_not_repeated_unless_allowed():
    catalog = Catalog(["a", "b", "c"], ["A", "B", "C"])
    allowed = torch.ones(3, dtype=torch.bool)
    rules = VideoDomain().apply_rules(Query("video", []), [0, 2], catalog, allowed)
    assert allowed.tolist() == [False, True, False] and rules == ["exclude_history"]
    allowed = torch.ones(3, dtype=torch.bool)
    assert VideoDomain().apply_rules(Query("video", [], allow_repeats=True), [0, 2], catalog, allowed) == []
    assert allowed.all()


@pytest.mark.skipif(not ML1M.is_dir(), reason=f"shared data set absent: {ML1M}")
def test_video_domain_reads_the_ml1m_sequences_as_the_protocol_says():
    dataset = k_core(VideoDomain().load_dataset(str(ML1M / "ml-1m.user_sequences.tsv")), 5)
    assert (len(dataset.sequences), len(dataset.catalog)) == (6040, 3416)


def test_eval_command_on_the_training_data_and_on_other_data(tmp_path, capsys):
    data = write_ml100k(tmp_path)
    dataset = VideoDomain().load_dataset(str(data))
    embeddings = torch.nn.functional.normalize(
        torch.randn(len(dataset.catalog), 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    config = TrainConfig(dim=16, max_len=8, epochs=2, batch_size=16)
    path = train(
        dataset,
        LSTMHead,
        embeddings,
        domain=VideoDomain,
        encoder_name="random",
        encoder_model_id="random",
        out_dir=tmp_path / "models",
        config=config,
    )

    assert run_command(eval_command, ["eval", "--model", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["same_data_as_training"] and report["users"] == 40 and report["data"] == str(data.resolve())
    assert report["metrics"]["test.ndcg@10"] == read_manifest(path).metrics["test.ndcg@10"]

    compact = compact_artifact(path, tmp_path / "compact", load_registry().heads, "float32")
    assert run_command(eval_command, ["eval", "--model", str(compact), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == pytest.approx(report["metrics"], abs=1e-6)

    other = tmp_path / "other"
    other.mkdir()
    write_ml100k(other, users=30)
    assert run_command(eval_command, ["eval", "--model", str(path), "--data", str(other)]) == 0
    table = capsys.readouterr().out
    assert "(not the training data)" in table and "users: 30;" in table
    assert any(line.startswith("test   popularity") for line in table.splitlines())


def test_train_command_rejects_unknown_head_options(tmp_path):
    with pytest.raises(InvalidArgument, match="--head-option 'width': head 'lstm' takes 'cell', 'dropout', 'layers'"):
        run_command(train_command, ["train", "--data", str(tmp_path), "--head-option", "width=3"])
    assert train_command.parse_options(["layers=2", "cell=gru", "dropout=0.5"], "--x") == {
        "layers": 2,
        "cell": "gru",
        "dropout": 0.5,
    }


@pytest.mark.slow
def test_train_command_with_the_local_encoder(tmp_path, capsys):
    data = write_ml100k(tmp_path)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "models"), "--epochs", "1", "--dim", "16",
            "--max-len", "8", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]  # fmt: skip
    assert run_command(train_command, argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    manifest = read_manifest(lines[-1])
    assert (manifest.domain, manifest.head, manifest.encoder) == ("video", "lstm", "local")
    assert manifest.encoder_model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert any(line.startswith("test   lstm") for line in lines)
