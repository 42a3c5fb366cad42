"""The ``podcasts`` domain: the next episode to play, from a listening history.

Data: a directory with two CSV files (UTF-8, with a header):

    episodes.csv  episode_id, show, title
    listens.csv   user_id, episode_id, action (play | finish | skip), timestamp (Unix seconds)

An episode's text is its title and show; ``show`` is also a catalog feature.

Rules: episodes the user finished or skipped are not offered again
(``exclude_finished``, ``exclude_skipped``), but one they started and left is, so that
they can resume it; a request may leave out whole shows (option ``exclude_shows``,
rule ``exclude_shows``). ``allow_repeats`` turns the first two off.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch

import temporec
from temporec import Catalog, Dataset, Event, Query, allowed, read_options
from temporec.data import DataError

ACTIONS = ("play", "finish", "skip")
EPISODE_FIELDS = ("episode_id", "show", "title")
LISTEN_FIELDS = ("user_id", "episode_id", "action", "timestamp")


@dataclass
class PodcastOptions:
    """What a podcasts request may ask for."""

    exclude_shows: list[str] = field(default_factory=list)  # leave these shows' episodes out


class PodcastsDomain(temporec.Domain):
    name = "podcasts"
    description = "Podcasts: the next episode to play, from plays, finishes and skips."
    actions = ACTIONS
    default_head = "decay"
    request_options = PodcastOptions

    def load_dataset(self, path: str) -> Dataset:
        """The listening histories in ``path`` (the directory, or a file in it)."""
        directory = Path(path) if Path(path).is_dir() else Path(path).parent
        catalog = read_episodes(directory / "episodes.csv")
        return Dataset(str(directory.resolve()), catalog, read_listens(directory / "listens.csv", catalog))

    def apply_rules(self, query: Query, history: list[int], catalog: Catalog, allowed_items: torch.Tensor) -> list[str]:
        rules = []

        def clear(rule: str, items: list[int]) -> None:
            if items and allowed_items[items].any():
                allowed_items[items] = False
                rules.append(rule)

        if not query.allow_repeats:
            clear("exclude_finished", acted_on(query, catalog, "finish"))
            clear("exclude_skipped", acted_on(query, catalog, "skip"))
        shows = set(read_options(query, PodcastOptions).exclude_shows)
        clear("exclude_shows", [i for i, show in enumerate(catalog.features.get("show", [])) if show in shows])
        return rules


def acted_on(query: Query, catalog: Catalog, action: str) -> list[int]:
    """The catalog indices of the history's episodes with ``action``."""
    return [catalog.index[e.item_id] for e in query.history if e.action == action and e.item_id in catalog.index]


def read_rows(path: Path, fields: tuple[str, ...]):
    """``(line number, row)`` for each row of the CSV file ``path``, whose header must name ``fields``."""
    if not path.is_file():
        raise DataError(f"{path}: not found; the podcasts domain reads episodes.csv and listens.csv")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [name for name in fields if name not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: the header lacks {allowed(missing)}; required: {allowed(fields)}")
        for row in reader:
            yield reader.line_num, {name: (row[name] or "").strip() for name in fields}


def read_episodes(path: Path) -> Catalog:
    ids, texts, shows = [], [], []
    for _, row in read_rows(path, EPISODE_FIELDS):
        ids.append(row["episode_id"])
        texts.append(f"{row['title']}. Show: {row['show']}")
        shows.append(row["show"])
    return Catalog(ids, texts, {"show": shows})


def read_listens(path: Path, catalog: Catalog) -> dict[str, list[Event]]:
    """Each user's events, oldest first."""
    sequences: dict[str, list[Event]] = {}
    for line, row in read_rows(path, LISTEN_FIELDS):
        if row["episode_id"] not in catalog.index:
            raise DataError(f"{path}:{line}: episode_id {row['episode_id']!r} is not in episodes.csv")
        if row["action"] not in ACTIONS:
            raise DataError(f"{path}:{line}: action {row['action']!r}; allowed: {allowed(ACTIONS)}")
        try:
            timestamp = float(row["timestamp"])
        except ValueError:
            raise DataError(f"{path}:{line}: timestamp {row['timestamp']!r} is not a number of seconds") from None
        sequences.setdefault(row["user_id"], []).append(Event(row["episode_id"], row["action"], timestamp))
    for events in sequences.values():
        events.sort(key=lambda event: event.timestamp)
    return sequences


@temporec.hookimpl
def register_domains(register):
    register(PodcastsDomain)
