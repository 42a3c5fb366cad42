"""Plain event files, CSV (with a header) or JSON Lines (one object per line), UTF-8.

    events   user_id, item_id (required); timestamp (Unix seconds or milliseconds, or
             ISO 8601; empty: unknown), action (empty: the domain's default), text
             (optional)
    items    item_id (required); text, or else any fields, joined into the item's text
             ("title. Field name: value"); fields other than item_id and text are kept
             as catalog features

Items need no text: without an items file, an item takes the text of its first event
that has one, or none (a model then knows it by its id and features); with an items
file, an event's item must be in it or carry its text.

A file whose columns have other names, or that has no header row, is described by a TOML
file beside it with its name (``events.toml`` for ``events.csv``; docs/data.md)::

    columns = { user_id = "visitorid", item_id = "itemid", action = "event" }
    actions = { addtocart = "cart", transaction = "purchase" }   # others are kept as they are
    time_unit = "ms"                                              # "s", "ms" or "auto"
    header = ["timestamp", "visitorid", "event", "itemid", "transactionid"]  # no header row
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from temporec.contract.errors import allowed
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import (
    TIME_UNITS,
    DataError,
    at,
    describe_item,
    group_histories,
    json_objects,
    parse_timestamp,
)

FORMATS = (".csv", ".jsonl")
EVENT_FIELDS = ("user_id", "item_id")
ITEM_FIELDS = ("item_id",)


EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "action", "text")
ITEM_COLUMNS = ("item_id", "text")


@dataclass
class Layout:
    """How to read one file: its ``<name>.toml`` beside it, or the defaults."""

    columns: dict[str, str] = field(default_factory=dict)  # temporec's field -> the file's column
    actions: dict[str, str] = field(default_factory=dict)  # the file's action -> the domain's
    time_unit: str = "auto"
    header: list[str] = field(default_factory=list)  # the columns of a CSV without a header row


def read_layout(path: Path, fields: tuple[str, ...]) -> Layout:
    """The layout of the data file ``path``, from ``path.with_suffix('.toml')`` if it exists."""
    described = path.with_suffix(".toml")
    if not described.is_file():
        return Layout()
    try:
        table = tomllib.loads(described.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{described}: unreadable: {exc}") from exc
    keys = {f.name for f in Layout.__dataclass_fields__.values()}
    if set(table) - keys:
        raise DataError(f"{described}: unknown key {sorted(set(table) - keys)[0]!r}; allowed: {allowed(keys)}")
    layout = Layout(**table)
    if not (isinstance(layout.columns, dict) and all(isinstance(v, str) for v in layout.columns.values())):
        raise DataError(f'{described}: columns: expected a table of field = "column"')
    unknown = set(layout.columns) - set(fields)
    if unknown:
        raise DataError(f"{described}: columns: unknown field {sorted(unknown)[0]!r}; allowed: {allowed(fields)}")
    if not (isinstance(layout.actions, dict) and all(isinstance(v, str) for v in layout.actions.values())):
        raise DataError(f'{described}: actions: expected a table of "file action" = "domain action"')
    if layout.time_unit not in TIME_UNITS:
        raise DataError(f"{described}: time_unit: {layout.time_unit!r}; allowed: {allowed(TIME_UNITS)}")
    if not (isinstance(layout.header, list) and all(isinstance(v, str) for v in layout.header)):
        raise DataError(f"{described}: header: expected a list of column names")
    if layout.header and path.suffix != ".csv":
        raise DataError(f"{described}: header: only a CSV file has a header row")
    return layout


def read_records(
    path: str | Path, required: tuple[str, ...], layout: Layout | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, field -> text)`` records of a CSV or JSONL file, with the fields named as
    temporec names them (``layout.columns``); each has the ``required`` fields."""
    path = Path(path)
    layout = layout or Layout()
    if path.suffix not in FORMATS:
        raise DataError(f"{path}: unknown format {path.suffix!r}; expected one of {allowed(FORMATS)}")
    columns = {field: layout.columns.get(field, field) for field in required}
    needed = tuple(columns.values())
    records = _csv_records(path, needed, layout) if path.suffix == ".csv" else _jsonl_records(path)
    source = {column: field for field, column in layout.columns.items()}
    shadowed = set(layout.columns) - set(source)  # the file's own columns named like a remapped field
    for number, record in records:
        if source:
            record = {source.get(name, name): value for name, value in record.items() if name not in shadowed}
        missing = [name for name in required if not (record.get(name) or "").strip()]
        if missing:
            names = [columns[name] for name in missing]
            raise at(path, number, f"missing {allowed(names)}; required fields are {allowed(needed)}")
        yield number, record


def _csv_records(path: Path, required: tuple[str, ...], layout: Layout) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of a CSV file; ``layout.header``: its columns when it has no header row."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, fieldnames=layout.header or None)
            header = reader.fieldnames or []
            absent = [name for name in required if name not in header]
            found = ", ".join(repr(name) for name in header) or "nothing"
            if absent and (layout.header or layout.columns):
                where = "its header list" if layout.header else f"the header row of {path.name}"
                raise DataError(
                    f"{path.with_suffix('.toml')}: names column {allowed(absent)}, which {where} lacks; "
                    f"the columns are {found}"
                )
            if absent:  # most often a file without a header row, whose first row is data
                raise at(
                    path,
                    1,
                    f"the first row was taken for the header and names {found}, not {allowed(absent)}; "
                    f"the file needs a header row naming at least {allowed(required)}, or "
                    f"{path.with_suffix('.toml').name} naming its columns (docs/data.md)",
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
    for number, record in json_objects(path):
        yield number, {key: "" if value is None else str(value) for key, value in record.items()}


def read_items(path: str | Path) -> Catalog:
    """The catalog of an items file (an item without text or other fields has none)."""
    path = Path(path)
    layout = read_layout(path, ITEM_COLUMNS)
    ids, texts, rows, first_line = [], [], [], {}
    for number, record in read_records(path, ITEM_FIELDS, layout):
        item = record.pop("item_id").strip()
        if item in first_line:
            raise at(path, number, f"item {item!r} repeats line {first_line[item]}")
        first_line[item] = number
        ids.append(item)
        texts.append(record.pop("text", "").strip() or describe_item(list(record.items())))
        rows.append(record)
    names = list(dict.fromkeys(name for row in rows for name in row))
    return Catalog(ids, texts, {name: [row.get(name, "") for row in rows] for name in names})


def read_events(events_path: str | Path, items_path: str | Path | None = None) -> Dataset:
    """A data set from an events file and, optionally, an items file."""
    events_path = Path(events_path)
    layout = read_layout(events_path, EVENT_COLUMNS)
    catalog = read_items(items_path) if items_path else Catalog([], [])
    ids, texts = list(catalog.item_ids), list(catalog.texts)
    row_of = {item: i for i, item in enumerate(ids)}
    missing = {}  # item -> line of its first textless event, for items outside the items file
    rows = []
    for number, record in read_records(events_path, EVENT_FIELDS, layout):
        item, text = record["item_id"].strip(), (record.get("text") or "").strip()
        if item not in row_of:
            row_of[item] = len(ids)
            ids.append(item)
            texts.append(text)
            if not text:
                missing[item] = number
        elif text and item in missing:
            texts[row_of[item]] = text  # its first event with a text names it
            del missing[item]
        timestamp = parse_timestamp(events_path, number, record.get("timestamp") or "", layout.time_unit)
        action = (record.get("action") or "").strip()
        rows.append((record["user_id"].strip(), Event(item, layout.actions.get(action, action), timestamp, text)))
    if missing and items_path:
        item, number = min(missing.items(), key=lambda pair: pair[1])
        raise at(
            events_path, number, f"item {item!r} is neither in the items file {items_path} nor has text in any event"
        )
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
