"""RecBole atomic files: ``<name>.inter`` (interactions) with ``<name>.item`` (items).

Both are UTF-8, tab-separated, with a typed header of ``field:type`` columns, type one of
token, token_seq, float, float_seq; for example (ml-100k)::

    user_id:token  item_id:token  rating:float  timestamp:float
    item_id:token  movie_title:token_seq  release_year:token  class:token_seq

Interactions need ``user_id`` and ``item_id``; ``timestamp`` (Unix seconds) is optional.
An item's text joins its token fields in header order ("Toy Story. Release year: 1995.
Class: Animation Children's Comedy"); every non-id field is also kept as a catalog feature.
"""

from __future__ import annotations

from pathlib import Path

from temporec.contract.errors import allowed
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import (
    DataError,
    at,
    describe_item,
    group_histories,
    numbered_lines,
    require_file,
    split_fields,
)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TEXT_TYPES = ("token", "token_seq")
USER, ITEM, TIME = "user_id", "item_id", "timestamp"


def read_atomic(path: str | Path, required: tuple[str, ...]) -> tuple[dict[str, str], list[tuple[int, dict[str, str]]]]:
    """The header (field -> type, in order) and the ``(line, field -> value)`` rows of an
    atomic file that must have the ``required`` fields."""
    path = Path(path)
    lines = numbered_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file; expected a header of field:type columns")
    header = _header(path, *first)
    missing = [name for name in required if name not in header]
    if missing:
        raise at(path, first[0], f"header lacks {allowed(missing)}; it has {allowed(header)}")
    layout = "tab-separated, one per header field"
    rows = [
        (number, dict(zip(header, split_fields(path, number, line, "\t", len(header), layout))))
        for number, line in lines
    ]
    return header, rows


def _header(path: Path, number: int, line: str) -> dict[str, str]:
    header: dict[str, str] = {}
    for column in line.split("\t"):
        name, colon, kind = column.strip().partition(":")
        if not colon or not name or kind not in FIELD_TYPES:
            raise at(path, number, f"header column {column!r} is not name:type with type one of {allowed(FIELD_TYPES)}")
        if name in header:
            raise at(path, number, f"header names field {name!r} twice")
        header[name] = kind
    return header


def read_items(path: str | Path) -> Catalog:
    """The catalog of a ``.item`` file."""
    path = Path(path)
    header, rows = read_atomic(path, (ITEM,))
    text_fields = [name for name, kind in header.items() if name != ITEM and kind in TEXT_TYPES]
    feature_fields = [name for name in header if name != ITEM]
    ids, texts, first_line = [], [], {}
    for number, row in rows:
        item = row[ITEM].strip()
        if not item:
            raise at(path, number, f"empty {ITEM}")
        if item in first_line:
            raise at(path, number, f"item {item!r} repeats line {first_line[item]}")
        first_line[item] = number
        ids.append(item)
        texts.append(describe_item([(name, row[name]) for name in text_fields]) or item)
    features = {name: [row[name].strip() for _, row in rows] for name in feature_fields}
    return Catalog(ids, texts, features)


def read_interactions(path: str | Path, catalog: Catalog, action: str = "") -> dict[str, list[Event]]:
    """Time-ordered histories from a ``.inter`` file over ``catalog``."""
    path = Path(path)
    header, rows = read_atomic(path, (USER, ITEM))
    has_time = TIME in header

    def events():
        for number, row in rows:
            item = row[ITEM].strip()
            if item not in catalog.index:
                raise at(path, number, f"item {item!r} is not in the .item file")
            stamp = row[TIME].strip() if has_time else ""
            try:
                timestamp = float(stamp) if stamp else 0.0
            except ValueError:
                raise at(path, number, f"{TIME} {stamp!r} is not a number") from None
            yield row[USER].strip(), Event(item, action, timestamp)

    return group_histories(events())


def find_inter_file(directory: Path) -> Path:
    """``<dir>/<dir name>.inter``, else the directory's only ``.inter`` file."""
    named = directory / f"{directory.name}.inter"
    if named.is_file():
        return named
    found = sorted(directory.glob("*.inter"))
    if len(found) != 1:
        names = allowed(p.name for p in found)
        raise DataError(f"{directory}: expected one .inter file (or {named.name}), found {names}")
    return found[0]


def load_recbole(path: str | Path, action: str = "") -> Dataset:
    """A RecBole data set: a ``.inter`` file (or a directory holding one) with its
    ``.item`` file beside it."""
    path = Path(path)
    inter = find_inter_file(path) if path.is_dir() else path
    catalog = read_items(require_file(inter.with_suffix(".item"), ".item file (the item texts)"))
    return Dataset(str(inter.resolve()), catalog, read_interactions(inter, catalog, action))
