"""Dated financial news headlines (``cnbc_headlines.csv``, ``guardian_headlines.csv``,
``reuters_headlines.csv``: Kaggle's "Financial News Headlines Data", see
``../shared/data/financial-headlines/PROVENANCE.md``) as one time-ordered stream.

CNBC gives a time of day in US Eastern time; the Guardian and Reuters give only the day,
which is taken as noon UTC (a day's window holds it, whatever the publisher's time zone).
A headline's id is its source and a hash of its day and text, so it names the same
headline in any copy of the files and a list of ids can be shared without the texts
(their licence forbids sharing those). Headlines that repeat on one day in one source are
kept once, and the 40 Guardian rows dated by month alone ("Jul-18") are left out.

``read_texts`` reads these files or a user's own ``texts.jsonl``: one object a line with
``id``, ``text``, ``time`` (Unix seconds or ISO 8601) and optionally ``source``.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from temporec.data.base import DataError, at, json_objects, parse_timestamp

SOURCES = ("cnbc", "guardian", "reuters")
EASTERN = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class Headline:
    id: str
    source: str
    timestamp: float  # Unix seconds
    text: str


def headline_id(source: str, day: str, text: str) -> str:
    """``source:`` and 12 hex digits of sha256 over the ISO day and the text."""
    return f"{source}:{hashlib.sha256(f'{day}|{text}'.encode()).hexdigest()[:12]}"


def read_headlines(directory: str | Path, sources: tuple[str, ...] = SOURCES) -> list[Headline]:
    """Every headline of ``sources`` under ``directory``, oldest first (ties: by source, then file order)."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise DataError(f"sources: {unknown} unknown; allowed: {', '.join(SOURCES)}")
    headlines: dict[str, Headline] = {}
    for source in sources:
        path = Path(directory) / f"{source}_headlines.csv"
        if not path.is_file():
            raise DataError(f"{path}: no such headlines file")
        for headline in _read(path, source):
            headlines.setdefault(headline.id, headline)
    order = {source: i for i, source in enumerate(SOURCES)}
    return sorted(headlines.values(), key=lambda h: (h.timestamp, order[h.source]))


def read_texts(path: str | Path) -> list[Headline]:
    """The texts at ``path``, oldest first: a directory of the headline files, or a
    ``.jsonl`` file of ``{"id", "text", "time", "source"}`` objects."""
    path = Path(path)
    if path.is_dir():
        return read_headlines(path, tuple(s for s in SOURCES if (path / f"{s}_headlines.csv").is_file()) or SOURCES)
    texts = []
    for number, row in json_objects(path):
        for key in ("id", "text", "time"):
            if not str(row.get(key, "")).strip():
                raise DataError(at(path, number, f"{key!r} is required"))
        timestamp = parse_timestamp(path, number, str(row["time"]))
        texts.append(Headline(str(row["id"]), str(row.get("source", "")), timestamp, str(row["text"])))
    return sorted(texts, key=lambda t: t.timestamp)


def _read(path: Path, source: str):
    with path.open(encoding="utf-8", newline="") as file:
        rows = csv.reader(file)
        if source != "reuters":  # the only one without a header
            next(rows, None)
        for number, row in enumerate(rows, 2 if source != "reuters" else 1):
            if not any(cell.strip() for cell in row):
                continue  # CNBC's blank separator rows
            try:
                text, when = _fields(source, row)
            except MonthOnly:
                continue  # 40 Guardian rows say only "Jul-18": their day is unknown
            except (ValueError, IndexError) as exc:
                raise DataError(at(path, number, f"unreadable row {row[:2]!r}: {exc}")) from exc
            text = " ".join(text.split())
            if text:
                yield Headline(headline_id(source, when.date().isoformat(), text), source, when.timestamp(), text)


def _fields(source: str, row: list[str]) -> tuple[str, datetime]:
    if source == "cnbc":  # Headlines, Time (" 7:51  PM ET Fri, 17 July 2020"), Description
        clock, _, day = " ".join(row[1].split()).partition(" ET ")
        date, month, year = day.split(", ", 1)[1].split()
        # months come as "Feb", "July" and "Sept": their first three letters name them
        when = datetime.strptime(f"{date} {month[:3]} {year} {clock.upper()}", "%d %b %Y %I:%M %p")
        return row[0], when.replace(tzinfo=EASTERN).astimezone(timezone.utc)
    if source == "guardian":  # Time ("18-Jul-20"), Headlines
        if row[0].count("-") < 2:
            raise MonthOnly
        return row[1], _noon(datetime.strptime(row[0].strip(), "%d-%b-%y"))
    return row[1], _noon(datetime.strptime(row[0].strip(), "%Y-%m-%d"))  # reuters: date, headline


class MonthOnly(Exception):
    """A date without its day."""


def _noon(day: datetime) -> datetime:
    return day.replace(hour=12, tzinfo=timezone.utc)
