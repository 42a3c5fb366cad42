"""RecBole atomic files: ``<name>.inter`` (interactions) with ``<name>.item`` (items).

Both are UTF-8, tab-separated, with a typed header of ``field:type`` columns, type one of
token, token_seq, float, float_seq; for example (ml-100k)::

    user_id:token  item_id:token  rating:float  timestamp:float
    item_id:token  movie_title:token_seq  release_year:token  class:token_seq

Interactions need ``user_id`` and ``item_id``; ``timestamp`` (Unix seconds) is optional.
An item's text joins its token fields in header order ("Toy Story. Release year: 1995.
Class: Animation Children's Comedy"); every non-id field is also kept as a catalog feature.

RecBole's sequential benchmark files, in which text-based benchmarks are distributed
(UniSRec's, for example), hold the split itself: ``X.train.inter``, ``X.valid.inter``
and ``X.test.inter`` with ``user_id:token``, ``item_id_list:token_seq`` (the history,
oldest first, often cut to its last items) and ``item_id:token`` (the next item), and
``X.text`` (``item_id:token``, ``text:token_seq``) or ``X.item`` beside them. Each user's
sequence is rebuilt from its rows in file order, train then valid then test, so its
valid and test rows are its last two events: leave-one-out then evaluates exactly the
given split. A row whose history does not continue the user's earlier rows is refused.
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
HISTORY, TEXT = "item_id_list", "text"
SEQUENTIAL_SPLITS = ("train", "valid", "test")


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


def sequential_files(path: Path) -> dict[str, Path] | None:
    """``{split: X.<split>.inter}`` when ``path`` is one of them or a directory holding
    one such trio, else None."""
    if path.is_dir():
        names = sorted({p.name.removesuffix(".train.inter") for p in path.glob("*.train.inter")})
        if not names:
            return None
        if len(names) > 1:
            raise DataError(f"{path}: holds the sequential files of {allowed(names)}; give one X.train.inter")
        directory, name = path, names[0]
    else:
        split = next((s for s in SEQUENTIAL_SPLITS if path.name.endswith(f".{s}.inter")), None)
        if split is None:
            return None
        directory, name = path.parent, path.name.removesuffix(f".{split}.inter")
    files = {split: directory / f"{name}.{split}.inter" for split in SEQUENTIAL_SPLITS}
    for split, file in files.items():
        require_file(file, f"the {split} split of {name} (RecBole sequential files come as train, valid, test)")
    return files


def load_recbole_sequential(files: dict[str, Path]) -> Dataset:
    """A data set from RecBole's sequential files (see the module's docstring)."""
    sequences: dict[str, list[str]] = {}
    last_split: dict[str, str] = {}
    for split in SEQUENTIAL_SPLITS:
        _, rows = read_atomic(files[split], (USER, HISTORY, ITEM))
        for number, row in rows:
            user, history, target = row[USER].strip(), row[HISTORY].split(), row[ITEM].strip()
            sequence = sequences.setdefault(user, list(history))  # a user's first row: its history
            if sequence[len(sequence) - len(history) :] != history:  # later rows: a tail of it
                raise at(files[split], number, f"the history of user {user!r} does not continue its earlier rows")
            sequence.append(target)
            last_split[user] = split
    incomplete = [user for user in sequences if last_split[user] != "test"]
    if incomplete:
        raise DataError(f"{files['test']}: no test row for user {incomplete[0]!r} (and {len(incomplete) - 1} more)")
    catalog = _sequential_catalog(files["train"], [item for sequence in sequences.values() for item in sequence])
    histories = {user: [Event(item) for item in sequence] for user, sequence in sequences.items()}
    return Dataset(str(files["train"].resolve()), catalog, histories)


def _sequential_catalog(train: Path, items: list[str]) -> Catalog:
    """The items' texts from ``X.text`` (or ``X.item``); items it lacks are known by id."""
    name = train.name.removesuffix(".train.inter")
    text_file, item_file = train.with_name(f"{name}.text"), train.with_name(f"{name}.item")
    texts: dict[str, str] = {}
    if text_file.is_file():
        _, rows = read_atomic(text_file, (ITEM, TEXT))
        texts = {row[ITEM].strip(): row[TEXT].strip() for _, row in rows}
    elif item_file.is_file():
        described = read_items(item_file)
        texts = dict(zip(described.item_ids, described.texts))
    ids = list(dict.fromkeys(items))
    return Catalog(ids, [texts.get(item, "") for item in ids])
