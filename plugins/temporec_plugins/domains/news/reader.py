"""News impressions in the MIND format (Microsoft News Dataset) and in NeMig's variant.

A directory holds ``news.tsv`` and ``behaviors.tsv`` (UTF-8, tab-separated, no header):

    MIND   news.tsv       id, category, subcategory, title, abstract, url, title entities,
                          abstract entities
           behaviors.tsv  impression id, user, time ("11/12/2019 2:14:46 PM"), history
                          (clicked ids, oldest first), impressions ("N1-1 N2-0": id-clicked)
    NeMig  news.tsv       id, publisher, date published (dd.mm.yyyy), title, abstract, url
           behaviors.tsv  impression id, user, history, impressions (no time column)

A full MIND download has one such directory per part (``MINDsmall_train``,
``MINDsmall_dev``); give their parent and every part is read, each impression tagged with
its part ("train", "dev"). The layout is recognised per file by its column count.

An item's text is its title and abstract. Features: MIND ``category``, ``subcategory``;
NeMig ``publisher`` and ``published`` (Unix seconds of the publication date). Ids without
a news row (MIND samples lack most) are dropped from histories and impressions, and
counted in ``NewsData.dropped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from temporec import Catalog
from temporec.data import DataError, at, numbered_lines, require_file

MIND_TIME = "%m/%d/%Y %I:%M:%S %p"
NEMIG_DATE = "%d.%m.%Y"
NEWS_COLUMNS = {8: "mind", 6: "nemig"}
BEHAVIOR_COLUMNS = {5: "mind", 4: "nemig"}
PARTS = ("train", "dev", "test")


@dataclass
class Impression:
    """One impression: what a user had clicked before, and what was shown and clicked."""

    id: str
    user: str
    time: float  # Unix seconds; 0 when the data has no impression times (NeMig)
    history: list[str]  # clicked news ids, oldest first
    candidates: list[str]  # the news shown
    labels: list[int]  # 1 clicked, 0 not, per candidate
    part: str = ""  # "train", "dev", ... for a MIND download with parts; else ""

    @property
    def clicked(self) -> list[str]:
        return [item for item, label in zip(self.candidates, self.labels) if label]


@dataclass
class NewsData:
    """A news catalog and its impressions, in file order."""

    name: str
    catalog: Catalog
    impressions: list[Impression]
    dropped: int = 0  # history and impression ids without a news row
    layout: str = ""  # "mind" or "nemig"


def _has_files(path: Path) -> bool:
    return (path / "news.tsv").is_file() and (path / "behaviors.tsv").is_file()


def _parts(path: Path) -> list[tuple[str, Path]]:
    """(part, directory) for subdirectories named like MIND's parts (``MINDsmall_dev``)."""
    if not path.is_dir():
        return []
    found = []
    for child in sorted(path.iterdir()):
        part = next((p for p in PARTS if child.name.lower().endswith(p)), "")
        if part and child.is_dir() and _has_files(child):
            found.append((part, child))
    return found


def load_news(path: str | Path) -> NewsData:
    """The news data at ``path``: a directory with news.tsv + behaviors.tsv, or the parent
    of MIND's part directories (``*_train``, ``*_dev``)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    parts = [("", path)] if _has_files(path) else _parts(path)
    if not parts:
        require_file(path / "news.tsv", "news.tsv (MIND format)")
        require_file(path / "behaviors.tsv", "behaviors.tsv (MIND format)")
    rows: dict[str, list[str]] = {}
    layout = ""
    for _, directory in parts:
        layout = _read_news(directory / "news.tsv", rows)
    catalog = _catalog(rows, layout)
    impressions, dropped = [], 0
    for part, directory in parts:
        read, lost = _read_behaviors(directory / "behaviors.tsv", catalog, part)
        impressions += read
        dropped += lost
    return NewsData(str(path.resolve()), catalog, impressions, dropped, layout)


def _read_news(path: Path, rows: dict[str, list[str]]) -> str:
    """Add the rows of one news.tsv to ``rows`` (id -> fields); returns its layout."""
    layout = ""
    for number, line in numbered_lines(path):
        fields = line.split("\t")
        kind = NEWS_COLUMNS.get(len(fields))
        if kind is None or (layout and kind != layout):
            raise at(
                path, number, f"expected 8 (MIND) or 6 (NeMig) tab-separated fields like row 1, found {len(fields)}"
            )
        layout = kind
        item = fields[0].strip()
        if not item:
            raise at(path, number, "empty news id")
        rows.setdefault(item, fields)  # the parts of a MIND download repeat news rows
    if not layout:
        raise DataError(f"{path}: no news rows")
    return layout


def _catalog(rows: dict[str, list[str]], layout: str) -> Catalog:
    ids, texts = list(rows), []
    if layout == "mind":
        features = {"category": [], "subcategory": []}
        for item in ids:
            _, category, subcategory, title, abstract = (f.strip() for f in rows[item][:5])
            texts.append(_text(title, abstract, item))
            features["category"].append(category)
            features["subcategory"].append(subcategory)
        return Catalog(ids, texts, features)
    features = {"publisher": [], "published": []}
    for item in ids:
        _, publisher, date, title, abstract = (f.strip() for f in rows[item][:5])
        texts.append(_text(title, abstract, item))
        features["publisher"].append(publisher)
        seconds = _date(date)
        features["published"].append(f"{seconds:.0f}" if seconds else "")
    return Catalog(ids, texts, features)


def _text(title: str, abstract: str, item: str) -> str:
    return ". ".join(part for part in (title, abstract) if part) or item


def _date(value: str) -> float:
    try:
        return datetime.strptime(value, NEMIG_DATE).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def _read_behaviors(path: Path, catalog: Catalog, part: str) -> tuple[list[Impression], int]:
    impressions, dropped = [], 0
    for number, line in numbered_lines(path):
        fields = line.split("\t")
        kind = BEHAVIOR_COLUMNS.get(len(fields))
        if kind is None:
            raise at(path, number, f"expected 5 (MIND) or 4 (NeMig) tab-separated fields, found {len(fields)}")
        impression_id, user = fields[0].strip(), fields[1].strip()
        time = _impression_time(path, number, fields[2]) if kind == "mind" else 0.0
        history, shown = fields[-2].split(), fields[-1].split()
        known_history = [item for item in history if item in catalog.index]
        candidates, labels = [], []
        for entry in shown:
            item, dash, label = entry.rpartition("-")
            if not dash or label not in ("0", "1"):
                raise at(
                    path,
                    number,
                    f"impression {entry!r} is not <news id>-<0|1> (a test file without labels cannot be evaluated)",
                )
            if item in catalog.index:
                candidates.append(item)
                labels.append(int(label))
        dropped += len(history) - len(known_history) + len(shown) - len(candidates)
        impressions.append(Impression(impression_id, user, time, known_history, candidates, labels, part))
    return impressions, dropped


def _impression_time(path: Path, number: int, value: str) -> float:
    try:
        return datetime.strptime(value.strip(), MIND_TIME).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise at(path, number, f"time {value.strip()!r} is not like '11/12/2019 2:14:46 PM'") from None
