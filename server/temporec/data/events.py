"""Plain event files, CSV (with a header) or JSON Lines (one object per line), UTF-8.

    events   user_id, item_id (required); timestamp (Unix seconds or ISO 8601; empty:
             unknown), action (empty: the domain's default), text (optional)
    items    item_id (required); text, or else any fields, joined into the item's text
             ("title. Field name: value"); fields other than item_id and text are kept
             as catalog features

An item that events name but the items file lacks takes the text of its first event
that has one; with no text anywhere it is an error.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from temporec.contract.errors import allowed
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import (
    DataError,
    at,
    describe_item,
    group_histories,
    numbered_lines,
    parse_timestamp,
)

FORMATS = (".csv", ".jsonl")
EVENT_FIELDS = ("user_id", "item_id")
ITEM_FIELDS = ("item_id",)


def read_records(path: str | Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, field -> text)`` records of a CSV or JSONL file; each has the ``required`` fields."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise DataError(f"{path}: unknown format {path.suffix!r}; expected one of {allowed(FORMATS)}")
    records = _csv_records(path, required) if path.suffix == ".csv" else _jsonl_records(path)
    for number, record in records:
        missing = [name for name in required if not record.get(name, "").strip()]
        if missing:
            raise at(path, number, f"missing {allowed(missing)}; required fields are {allowed(required)}")
        yield number, record


def _csv_records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            absent = [name for name in required if name not in header]
            if absent:  # most often a file without a header row, whose first row is data
                found = ", ".join(repr(name) for name in header) or "nothing"
                raise at(
                    path,
                    1,
                    f"the first row was taken for the header and names {found}, not {allowed(absent)}; "
                    f"the file needs a header row naming at least {allowed(required)}",
                )
            for record in reader:
                if None in record or None in record.values():
                    raise at(path, reader.line_num, f"expected {len(reader.fieldnames)} fields like the header")
                yield reader.line_num, record
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    for number, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise at(path, number, f"invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise at(path, number, "expected a JSON object")
        yield number, {key: "" if value is None else str(value) for key, value in record.items()}


def read_items(path: str | Path) -> Catalog:
    """The catalog of an items file."""
    path = Path(path)
    ids, texts, rows, first_line = [], [], [], {}
    for number, record in read_records(path, ITEM_FIELDS):
        item = record.pop("item_id").strip()
        if item in first_line:
            raise at(path, number, f"item {item!r} repeats line {first_line[item]}")
        first_line[item] = number
        text = record.pop("text", "").strip() or describe_item(list(record.items()))
        if not text:
            raise at(path, number, f"item {item!r} has no text: give a 'text' field or other fields")
        ids.append(item)
        texts.append(text)
        rows.append(record)
    names = list(dict.fromkeys(name for row in rows for name in row))
    return Catalog(ids, texts, {name: [row.get(name, "") for row in rows] for name in names})


def read_events(events_path: str | Path, items_path: str | Path | None = None) -> Dataset:
    """A data set from an events file and, optionally, an items file."""
    events_path = Path(events_path)
    catalog = read_items(items_path) if items_path else Catalog([], [])
    ids, texts = list(catalog.item_ids), list(catalog.texts)
    known, missing = set(ids), {}  # missing: item -> line of its first textless event
    rows = []
    for number, record in read_records(events_path, EVENT_FIELDS):
        item, text = record["item_id"].strip(), record.get("text", "").strip()
        if item not in known:
            if text:
                ids.append(item)
                texts.append(text)
                known.add(item)
                missing.pop(item, None)
            else:
                missing.setdefault(item, number)
        timestamp = parse_timestamp(events_path, number, record.get("timestamp", ""))
        rows.append((record["user_id"].strip(), Event(item, record.get("action", "").strip(), timestamp, text)))
    if missing:
        item, number = min(missing.items(), key=lambda pair: pair[1])
        where = f"the items file {items_path}" if items_path else "an items file (none was found)"
        raise at(events_path, number, f"item {item!r} is neither in {where} nor has text in any event")
    extra = len(ids) - len(catalog)
    features = {name: values + [""] * extra for name, values in catalog.features.items()}
    return Dataset(str(events_path.resolve()), Catalog(ids, texts, features), group_histories(rows))


def find_items_file(directory: Path) -> Path | None:
    """``items.csv`` or ``items.jsonl`` in ``directory``, if there is one."""
    return next((directory / f"items{ext}" for ext in FORMATS if (directory / f"items{ext}").is_file()), None)


def load_events(path: str | Path) -> Dataset:
    """An events file (with ``items.csv|jsonl`` beside it, if any), or a directory holding
    ``events.csv|jsonl`` and optionally ``items.csv|jsonl``."""
    path = Path(path)
    if path.is_dir():
        found = [path / f"events{ext}" for ext in FORMATS if (path / f"events{ext}").is_file()]
        if len(found) != 1:
            raise DataError(f"{path}: expected one of events.csv, events.jsonl; found {len(found)}")
        return read_events(found[0], find_items_file(path))
    return read_events(path, find_items_file(path.parent))
