"""The Amazon 2014 5-core sets of ``../shared/data`` (``amazon-beauty``, ``amazon-office``) as
temporec data sets, for benchmarks only: their folders are laid out by whoever gathered them
(``interactions.tsv`` + ``items.jsonl``, see ``SOURCES.md``), not in a format users have.

Each interaction is a review, read as a purchase. Histories keep the file's order (by user,
then day: same-day reviews are in the order the public copies give). An item's text is its
title, then its brand and categories (``describe_item``); its brand and its most specific
category are catalog features. ``test_ranks``: what the Amazon benchmarks measure.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import describe_item, group_histories
from temporec.model import load_model
from temporec.training.leave_one_out import rank_split
from temporec.training.splits import encode, history_batch

SETS = ("amazon-beauty", "amazon-office")


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


def _categories(item: dict) -> str:
    """Beauty quotes its categories (``'Beauty', 'Makeup'``); Office does not."""
    return ", ".join(part.strip().strip("'") for part in item.get("categories", "").split(",") if part.strip())
