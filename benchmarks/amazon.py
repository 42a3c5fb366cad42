"""The Amazon 2014 5-core sets of ``../shared/data`` (``amazon-beauty``, ``amazon-office``) as
temporec data sets, for benchmarks only: their folders are laid out by whoever gathered them
(``interactions.tsv`` + ``items.jsonl``, see ``SOURCES.md``), not in a format users have.

Each interaction is a review, read as a purchase. Histories keep the file's order (by user,
then day: same-day reviews are in the order the public copies give). An item's text is its
title, then its brand and categories (``describe_item``); its brand and its most specific
category are catalog features. ``test_ranks``: what the Amazon benchmarks measure.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import torch

from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import describe_item, group_histories
from temporec.model import load_model, read_manifest
from temporec.training import TrainConfig, train
from temporec.training.leave_one_out import rank_split
from temporec.training.ranking_metrics import bootstrap_interval, summarize
from temporec.training.splits import encode, history_batch

SETS = ("amazon-beauty", "amazon-office")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def load_amazon(folder: Path) -> Dataset:
    items = [json.loads(line) for line in open(folder / "items.jsonl", encoding="utf-8")]
    ids = [item["asin"] for item in items]
    texts = [
        describe_item(
            [("title", item.get("title", "")), ("brand", item.get("brand", "")), ("categories", _categories(item))]
        )
        for item in items
    ]
    features = {
        "brand": [item.get("brand", "") for item in items],
        "category": [(_categories(item).split(", ") or [""])[-1] for item in items],
    }
    with open(folder / "interactions.tsv", newline="", encoding="utf-8") as f:
        rows = [
            (row["user_idx"], Event(row["asin"], "purchase", float(row["unix_time"])))
            for row in csv.DictReader(f, delimiter="\t")
        ]
    return Dataset(str(folder.resolve()), Catalog(ids, texts, features), group_histories(rows))


@torch.no_grad()
def test_ranks(artifact: Path, dataset: Dataset) -> torch.Tensor:
    """The saved model's rank of every test target (leave-one-out, the history masked):
    what ``summarize`` and ``bootstrap_interval`` take."""
    loaded = load_model(artifact, load_registry().heads)
    seqs = encode(dataset, loaded.manifest.actions)
    max_len = loaded.manifest.max_len

    def score(users, stops):
        return loaded.model.scores(history_batch(seqs, users, stops, max_len))

    return rank_split(score, seqs, "test", 256, torch.device("cpu"))


def metric_cells(ranks, metrics: Sequence[str] = ("hr@10", "ndcg@10")) -> list[str]:
    """One table cell per metric of ``ranks``: the value and its 95% bootstrap interval."""
    values = summarize(ranks)
    return [f"{values[m]:.4f} ({low:.4f}-{high:.4f})" for m in metrics for low, high in [bootstrap_interval(ranks, m)]]


def fit_ids_only(dataset: Dataset, head: str, config: TrainConfig, work: Path) -> tuple[torch.Tensor, dict]:
    """Train ``head`` on item ids alone (no encoder runs: the text table is empty) as
    ``temporec train`` does, with the ``events`` domain; the test ranks and the epochs."""
    registry = load_registry()
    path = train(
        dataset,
        registry.heads[head],
        torch.zeros(len(dataset.catalog), 0),
        domain=registry.domains["events"],
        encoder_name="local",
        encoder_model_id="",
        out_dir=work,
        config=replace(config, use_text=False),
    )
    trained = read_manifest(path).metrics
    return test_ranks(path, dataset), {"epochs": int(trained["epochs"]), "best_epoch": int(trained["best_epoch"])}


def arguments(
    description: str,
    minutes: float,
    argv: list[str] | None,
    sets: Sequence[str] = SETS,
    flags: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The flags every Amazon benchmark takes (``sets``: the data sets it reads; ``flags``
    adds a benchmark's own); ``folder``: the chosen set's (checked to exist)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if flags:
        flags(parser)
    parser.add_argument(
        "--set", choices=sets, default="amazon-office", help="the shared data set (default amazon-office)"
    )
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    parser.add_argument(
        "--minutes", type=float, default=minutes, help=f"time budget of every row (default {minutes:g})"
    )
    parser.add_argument("--jobs", type=int, default=2, help="rows trained at once (default 2: one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    args.folder = args.data / args.set
    if not args.folder.is_dir():
        raise SystemExit(f"no shared data at {args.folder}: nothing to benchmark")
    return args


def side_by_side(measure: Callable, runs: Sequence, args: argparse.Namespace) -> dict[str, dict]:
    """``measure(run, folder, minutes, work)`` of every run, ``args.jobs`` at a time, each in
    a process of its own (one torch thread each); results by run name, in order."""
    with tempfile.TemporaryDirectory(prefix="temporec-amazon-") as work:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {run.name: pool.submit(measure, run, args.folder, args.minutes, work) for run in runs}
            return {name: future.result() for name, future in futures.items()}


def _categories(item: dict) -> str:
    """Beauty quotes its categories (``'Beauty', 'Makeup'``); Office does not."""
    return ", ".join(part.strip().strip("'") for part in item.get("categories", "").split(",") if part.strip())
