"""The ML-1M benchmark's bookkeeping; its runs take hours and are not tests
(``benchmarks/ml1m.py``)."""

import collections
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT

# The benchmarks are scripts, not a package: they import each other from their folder.
sys.path.insert(0, str(ROOT / "benchmarks"))
import ml1m  # noqa: E402
from results_file import machine, machine_line, source_revision  # noqa: E402


@pytest.mark.parametrize(
    "argv",
    [
        ["--runs", "ar"],
        ["--runs", "vae", "--lr", "1e-3", "--schedule", "constant", "--patience", "10", "--minutes", "35"],
        ["--runs", "lstm", "--quick"],
    ],
)
def test_the_recorded_command_measures_the_same_run_again(argv):
    args = ml1m.parse_args(argv)
    name = args.runs[0]
    command = shlex.split(ml1m.reproducing_command(args, name))
    assert command[:2] == [".venv/bin/python", "benchmarks/ml1m.py"]
    again = ml1m.parse_args(command[2:])
    run = next(r for r in ml1m.RUNS if r.name == name)
    assert again.runs == [name]
    assert ml1m.run_config(run, again) == ml1m.run_config(run, args)


def test_the_recorded_command_spells_out_every_setting_that_has_a_default():
    command = ml1m.reproducing_command(ml1m.parse_args(["--runs", "ar"]), "ar")
    for flag, _ in ml1m.MEASURING_OPTIONS:
        assert f" {flag} " in command


def test_a_result_names_the_commit_that_measured_it(tmp_path):
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)  # noqa: E731
    assert source_revision(tmp_path) == "unknown"  # not a checkout
    git("init", "-q")
    (tmp_path / "run.py").write_text("first\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("# Benchmarks\n")
    git("add", "run.py", "benchmarks/RESULTS.md")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = source_revision(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7,}", commit)
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("# Benchmarks\n\na run's results\n")
    assert source_revision(tmp_path) == commit  # results are output, not code
    (tmp_path / "run.py").write_text("changed\n")
    assert source_revision(tmp_path) == commit + "+changes"


def test_every_benchmark_describes_the_machine_it_ran_on_the_same_way():
    import os

    import torch

    described = machine()
    assert described["cores"] == str(len(os.sched_getaffinity(0)))
    assert described["threads"] == str(torch.get_num_threads())
    assert described["device"] == "cpu" and "gpu" not in described
    line = machine_line(described, ("threads", "cpu"))
    assert line == f"threads {described['threads']}, cpu {described['cpu']}"


def test_the_textbook_sasrec_is_causal_and_reads_left_padding_as_nothing():
    import torch

    from sasrec_gap import TextbookSASRec

    torch.manual_seed(0)
    model = TextbookSASRec(n_items=9, dim=16, max_len=6).eval()
    items = torch.tensor([[0, 0, 3, 4, 5, 6]])
    states = model(items)
    changed = model(torch.tensor([[0, 0, 3, 4, 5, 7]]))  # only the last item differs
    assert torch.allclose(states[0, :5], changed[0, :5], atol=1e-6) and not torch.allclose(states[0, 5], changed[0, 5])
    assert torch.allclose(model(items[:, 2:])[0, -1], states[0, -1], atol=1e-5)  # padding changes nothing
    assert model.logits(states[:, -1]).shape == (1, 9)


def test_the_amazon_reader_keeps_file_order_and_describes_items(tmp_path):
    from amazon import load_amazon

    (tmp_path / "interactions.tsv").write_text(
        "user_idx\treviewerID\tasin\tunix_time\n1\tA\tB2\t200\n1\tA\tB1\t200\n2\tB\tB1\t100\n"
    )
    (tmp_path / "items.jsonl").write_text(
        '{"asin": "B1", "title": "Nail polish", "brand": "OPI", "categories": "\'Beauty\', \'Nails\'"}\n'
        '{"asin": "B2", "title": "Stapler", "brand": "", "categories": "Office, Staplers"}\n'
    )
    dataset = load_amazon(tmp_path)
    assert [e.item_id for e in dataset.sequences["1"]] == ["B2", "B1"]  # same day: the file's order
    assert dataset.catalog.texts == [
        "Nail polish. Brand: OPI. Categories: Beauty, Nails",
        "Stapler. Categories: Office, Staplers",
    ]
    assert dataset.catalog.features == {"brand": ["OPI", ""], "category": ["Nails", "Staplers"]}


def test_the_paced_load_sends_on_arrival_and_counts_from_it(grpc_server):
    """benchmarks/load.py's open loop against a real server: every arrival is sent and
    answered, the rate is about the one asked for, and the tail goal is stated."""
    import asyncio

    import load
    from temporec.v1 import recommender_pb2 as pb

    requests = [pb.RecommendRequest(domain="tiny", history=[pb.Event(item_id="v1", action="view")], k=3)]
    paced = asyncio.run(load.run_paced(grpc_server.target, requests, rate=200, seconds=1.0, channels=2))
    assert paced.codes["OK"] == paced.requests == len(paced.latencies) > 50
    settings = load.Settings(paced=0.5, paced_seconds=1.0)
    closed = load.Tally(latencies=[0.01] * 800, codes=collections.Counter(OK=800), seconds=2.0)
    text = load.paced_text(settings, closed, paced)
    assert "at 50% of that throughput (200.0 a second" in text and "Goal, p99 at most 3x p50" in text
