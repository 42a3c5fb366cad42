"""Data readers: files on disk -> ``temporec.contract.types.Dataset`` (a catalog with item text and
per-user, time-ordered event lists).

``load_dataset(path)`` recognises these layouts (a directory or a file in it):

    MovieLens-1M/10M   ratings.dat + movies.dat
    MovieLens-100k     u.data + u.item (+ u.genre)
    sequences          <name>.user_sequences.tsv + movies.dat
    RecBole            <name>.inter + <name>.item
    RecBole sequential X.train|valid|test.inter (+ X.text): the split is the files'
    plain events       events.csv|jsonl (+ items.csv|jsonl)
    Taobao             UserBehavior.csv / user_behavior*.csv (shop events, no item text)

News impressions (``temporec_plugins.domains.news.reader``) and customer-service conversations
(``temporec_plugins.domains.customer_service.reader``) have readers of their own, used by their domains;
``Conversation`` and ``ConversationData`` (``conversations``) are what conversation readers return.

For readers of other formats (plugins): ``DataError``, ``at`` (an error at a file's line),
``numbered_lines``, ``json_objects``, ``parse_timestamp``, ``require_file`` and ``read_items``.

A data set read from disk is named by its absolute path, so a model's manifest says
where its data came from. Malformed rows raise ``DataError`` naming the file and line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from temporec.contract.types import Catalog, Dataset
from temporec.data.base import DataError, at, json_objects, numbered_lines, parse_timestamp, require_file
from temporec.data.conversations import SPLITS, Conversation, ConversationData
from temporec.data.events import load_events, read_events, read_items
from temporec.data.movielens import load_movielens, load_sequences
from temporec.data.phrasebank import LABELS as PHRASEBANK_LABELS
from temporec.data.phrasebank import LEVELS as PHRASEBANK_LEVELS
from temporec.data.phrasebank import Sentence, phrasebank_file, read_phrasebank
from temporec.data.recbole import load_recbole, load_recbole_sequential, sequential_files
from temporec.data.taobao import find_taobao_file, is_taobao_file, load_taobao

log = logging.getLogger(__name__)

__all__ = [
    "PHRASEBANK_LABELS",
    "PHRASEBANK_LEVELS",
    "SPLITS",
    "Conversation",
    "ConversationData",
    "Sentence",
    "DataError",
    "at",
    "json_objects",
    "numbered_lines",
    "parse_timestamp",
    "read_items",
    "require_file",
    "k_core",
    "load_dataset",
    "load_events",
    "load_movielens",
    "load_recbole",
    "load_recbole_sequential",
    "load_sequences",
    "load_taobao",
    "phrasebank_file",
    "read_events",
    "read_phrasebank",
]

LAYOUTS = (
    "a MovieLens directory (ratings.dat + movies.dat, or u.data + u.item)",
    "a *.user_sequences.tsv file with movies.dat beside it",
    "a RecBole .inter file (or its directory) with the .item file beside it",
    "RecBole sequential files X.train.inter, X.valid.inter, X.test.inter (or their directory), X.text beside them",
    "an events .csv/.jsonl file (or a directory with events.csv|jsonl), items.csv|jsonl beside it",
    "a Taobao UserBehavior.csv / user_behavior*.csv file (or its directory)",
)


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read the data set at ``path``, recognising its layout by file names."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    sequential = sequential_files(path)  # before other .inter files: it is a trio of them
    if sequential:
        return load_recbole_sequential(sequential)
    directory = path if path.is_dir() else path.parent
    name = path.name
    if path.is_dir():
        if (path / "ratings.dat").is_file() or (path / "u.data").is_file():
            return load_movielens(path)
        sequences = sorted(path.glob("*.user_sequences.tsv"))
        if len(sequences) == 1:
            return load_sequences(sequences[0])
        if any(path.glob("*.inter")):
            return load_recbole(path)
        if any((path / f"events{ext}").is_file() for ext in (".csv", ".jsonl")):
            return load_events(path)
        if find_taobao_file(path):
            return load_taobao(path)
    elif name in ("ratings.dat", "u.data"):
        return load_movielens(directory)
    elif name.endswith(".tsv") and (directory / "movies.dat").is_file():
        return load_sequences(path)
    elif path.suffix == ".inter":
        return load_recbole(path)
    elif is_taobao_file(path):
        return load_taobao(path)
    elif path.suffix in (".csv", ".jsonl"):
        return load_events(path)
    raise DataError(f"{path}: not a recognised data set; expected " + "; or ".join(LAYOUTS))


def k_core(dataset: Dataset, k: int = 5) -> Dataset:
    """Keep the ``k``-core: repeatedly drop items with fewer than ``k`` interactions, then
    users with fewer than ``k``, until neither drops anything. Catalog items left without
    interactions are dropped too; order (catalog and histories) is kept. ``k`` below 1:
    the data set as it is."""
    if k < 1:
        return dataset
    users = list(dataset.sequences)
    lengths = np.array([len(dataset.sequences[u]) for u in users], dtype=np.int64)
    user_of = np.repeat(np.arange(len(users)), lengths)
    item_of = _catalog_indices(dataset)
    keep = np.ones(len(item_of), dtype=bool)
    while True:
        before = keep.sum()
        keep &= np.bincount(item_of[keep], minlength=len(dataset.catalog))[item_of] >= k
        keep &= np.bincount(user_of[keep], minlength=len(users))[user_of] >= k
        if keep.sum() == before:
            break
    subset = _subset(dataset, keep, users, lengths)
    if not keep.all():
        log.info(
            "%s: kept the %d-core (items and users with at least %d events): %d of %d items, %d of %d users, "
            "%d of %d events",
            dataset.name, k, k, len(subset.catalog), len(dataset.catalog), len(subset.sequences), len(users),
            int(keep.sum()), len(keep),
        )  # fmt: skip
    return subset


def _catalog_indices(dataset: Dataset) -> np.ndarray:
    index = dataset.catalog.index
    try:
        return np.array([index[e.item_id] for events in dataset.sequences.values() for e in events], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{dataset.name}: events name item {exc.args[0]!r}, which is not in the catalog") from None


def _subset(dataset: Dataset, keep: np.ndarray, users: list[str], lengths: np.ndarray) -> Dataset:
    """The data set restricted to the events where ``keep`` (in flat event order) is True."""
    sequences, start = {}, 0
    for user, length in zip(users, lengths):
        kept = [event for event, flag in zip(dataset.sequences[user], keep[start : start + length]) if flag]
        start += length
        if kept:
            sequences[user] = kept
    used = {event.item_id for events in sequences.values() for event in events}
    catalog = dataset.catalog
    rows = [i for i, item in enumerate(catalog.item_ids) if item in used]
    subset = Catalog(
        [catalog.item_ids[i] for i in rows],
        [catalog.texts[i] for i in rows],
        {name: [values[i] for i in rows] for name, values in catalog.features.items()},
    )
    return Dataset(dataset.name, subset, sequences)
