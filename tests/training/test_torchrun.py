"""``temporec train`` under torchrun: two real processes on the CPU (gloo), each training on
its share of every batch (``temporec.training.distributed``).

With no dropout, one epoch in two processes takes the same steps as in one (the gradient of
the whole batch, summed from its two halves), so the two artifacts hold the same weights up
to float rounding; the two ranks' weights are identical (their logged digests); the artifact
evaluates as it was tested. The texts
are embedded by the example plugin's ``hashing`` encoder (tests/plugin_example): offline,
fast to start in every process.
"""

import csv
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from temporec.cli import main
from temporec.contract.registry import load_registry
from temporec.model.artifacts import load_model, read_manifest
from temporec.training.distributed import Ranks
from temporec.training.next_item import default_threads

pytestmark = pytest.mark.slow

HANG_GUARD_S = 300  # a run that waits this long is hanging, not training
N_ITEMS = 60


def write_cycles(path: Path) -> Path:
    """events.csv: each of 150 users walks one fixed cycle through 60 items from a random
    start, 8 events each: the next item follows from the last one."""
    rng = random.Random(0)
    order = rng.sample(range(N_ITEMS), N_ITEMS)
    successor = dict(zip(order, order[1:] + order[:1]))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for user in range(150):
            item = rng.choice(order)
            for t in range(8):
                writer.writerow([f"u{user}", item, 1_700_000_000 + 3600 * t])
                item = successor[item]
    return path


TOPICS = {
    "refund": ["refund", "money", "back", "return"],
    "password": ["password", "login", "reset", "locked"],
    "card": ["card", "arrive", "post", "delivery"],
    "rate": ["exchange", "rate", "currency", "euros"],
}


def write_conversations(directory: Path) -> Path:
    """replies.csv and conversations.jsonl: each conversation asks about one topic in two
    of its words among filler; per topic 3 test, 3 valid and 20 training conversations."""
    rng = random.Random(0)
    directory.mkdir()
    with open(directory / "replies.csv", "w", newline="") as f:
        csv.writer(f).writerows([["item_id", "text"], *((topic, f"about {topic}") for topic in TOPICS)])
    lines = []
    for topic, words in TOPICS.items():
        for number in range(26):
            text = " ".join(rng.sample(["hi", "please", "i", "need", "help", "my", "the"], 3) + rng.sample(words, 2))
            split = "test" if number < 3 else "valid" if number < 6 else "train"
            turns = [{"role": "user", "text": text}]
            lines.append(json.dumps({"id": f"{topic}-{number}", "turns": turns, "replies": [topic], "split": split}))
    (directory / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    return directory


TRAINERS = {
    # the next-item trainer: 150 windows, 5 batches of 32 (the last of 22), ids only
    "next-item": ("events", write_cycles, "events.csv", ["--no-text"]),
    # the conversation trainer: 80 conversations, 10 batches of 8
    "conversations": ("customer_service", write_conversations, "conversations", ["--batch-size", "8"]),
}


@pytest.fixture
def environment(example_plugin_path, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPOREC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(example_plugin_path), env.get("PYTHONPATH")]))
    env["TEMPOREC_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Two processes on this machine; ``--standalone`` picks a free rendezvous port, so that
    tests running side by side do not meet."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)


def close_but_a_few(a: torch.Tensor, b: torch.Tensor, share: float = 0.01) -> bool:
    """Equal up to float rounding, but for at most ``share`` of the elements. Adam takes a
    whole step (the learning rate) on a gradient of a rounding residue, and a gradient that
    cancels to exactly 0 summed in one order leaves such a residue in another: the hashing
    encoder's coordinates (all of one size, either sign) cancel so in ``text_proj``."""
    apart = ~torch.isclose(a.float(), b.float(), atol=1e-5, rtol=1e-4)
    return a.shape == b.shape and int(apart.sum()) <= share * apart.numel()


def training_args(domain: str, data: Path, extra: list[str]) -> list[str]:
    return ["train", "--domain", domain, "--data", str(data), "--encoder", "hashing", "--epochs", "1",
            "--dim", "16", "--max-len", "8", "--lr", "0.01", "--dropout", "0", "--head-option", "dropout=0",
            "--threads", "1", *extra]  # fmt: skip


@pytest.mark.parametrize("trainer", TRAINERS)
def test_two_processes_train_the_same_model_as_one(
    trainer, tmp_path, environment, monkeypatch, capsys, example_plugin_path
):
    domain, write, name, extra = TRAINERS[trainer]
    args = training_args(domain, write(tmp_path / name), extra)
    done = torchrun("-m", "temporec", *args, "--out", str(tmp_path / "two"), env=environment)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-3000:]

    (artifact,) = (tmp_path / "two").glob(f"{domain}-*")  # rank 0 alone saved it
    assert not list((tmp_path / "two").glob(".partial-*"))
    assert done.stdout.count("best epoch") == 1 and done.stdout.splitlines()[-1] == str(artifact)
    digests = dict(re.findall(r"rank (\d) of 2: weights sha256 (\w+)", done.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], done.stderr[-3000:]

    monkeypatch.syspath_prepend(str(example_plugin_path))  # the hashing encoder, in this process
    monkeypatch.setenv("TEMPOREC_CACHE_DIR", environment["TEMPOREC_CACHE_DIR"])
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    (alone,) = (tmp_path / "one").glob(f"{domain}-*")
    two, one = load_file(artifact / "model.safetensors"), load_file(alone / "model.safetensors")
    assert two.keys() == one.keys()
    for key in one:
        assert close_but_a_few(two[key], one[key]), key
    assert load_model(artifact, load_registry().heads).manifest.head == "lstm"  # the checks a server makes pass

    capsys.readouterr()
    assert main(["eval", "--model", str(artifact), "--device", "cpu", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)["metrics"]
    tested = {k: v for k, v in read_manifest(artifact).metrics.items() if k.startswith("test.")}
    assert tested and all(evaluated[k] == pytest.approx(v) for k, v in tested.items())


FAILING_RANK = """\
import os, sys
import torch
from temporec.data import load_dataset
from temporec.training import TrainConfig, train
from temporec_plugins.domains.events import EventsDomain
from temporec_plugins.heads.lstm import LSTMHead

def fail(epoch, _):
    if epoch == 2 and os.environ["RANK"] == "1":
        raise RuntimeError("rank 1 fails at epoch 2")

dataset = load_dataset(sys.argv[1])
config = TrainConfig(dim=16, max_len=8, epochs=5, patience=5, use_text=False, threads=1)
train(dataset, LSTMHead, torch.zeros(len(dataset.catalog), 0), domain=EventsDomain, encoder_name="none",
      encoder_model_id="none", out_dir=sys.argv[2], config=config, on_epoch=fail)
"""


def test_a_rank_that_fails_stops_the_run_without_an_artifact(tmp_path, environment):
    """Rank 0 waits in the next step's all-reduce for a partner that is gone: torchrun ends
    it, and the run fails at once rather than at the process group's timeout."""
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    done = torchrun(str(script), str(write_cycles(tmp_path / "events.csv")), str(tmp_path / "models"), env=environment)
    assert done.returncode != 0
    assert "rank 1 fails at epoch 2" in done.stderr
    assert not list((tmp_path / "models").glob("events-*"))


def test_each_rank_takes_every_other_window_of_every_batch_that_has_one_for_each():
    batches = [torch.arange(0, 5), torch.arange(5, 10), torch.arange(10, 11)]
    second = Ranks(torch.device("cpu"), rank=1, world=2).share(batches)
    assert [rows.tolist() for rows in second] == [[1, 3], [6, 8]]  # the last batch, one window, is left out
    assert Ranks(torch.device("cpu")).share(batches) is batches


def test_the_processes_on_one_machine_share_its_cores(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = default_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_threads() == max(1, (alone + 1) // 2 - 1)
