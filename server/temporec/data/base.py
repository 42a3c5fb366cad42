"""What every reader shares: the error type, line-numbered reading, grouping events into
time-ordered histories, and turning an item's fields into one text for the encoder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from temporec.contract.errors import InvalidArgument
from temporec.contract.types import Event


class DataError(InvalidArgument):
    """A data file is missing or has a malformed row; the message names the file and line."""


def at(path: str | os.PathLike, line: int, problem: str) -> DataError:
    """A DataError for row ``line`` of ``path``."""
    return DataError(f"{path}:{line}: {problem}")


def numbered_lines(path: str | os.PathLike, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``path`` without line ends, with their 1-based numbers."""
    try:
        with open(path, encoding=encoding, newline="") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def json_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line, object)`` for each line of a JSON Lines file; anything but an object is an
    error naming the line."""
    for number, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise at(path, number, f"invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise at(path, number, "expected a JSON object")
        yield number, record


def split_fields(path, number: int, line: str, separator: str, count: int, layout: str) -> list[str]:
    """Split ``line`` into exactly ``count`` fields, or raise naming the expected layout."""
    fields = line.split(separator)
    if len(fields) != count:
        raise at(path, number, f"expected {count} fields ({layout}), found {len(fields)}")
    return fields


TIME_UNITS = ("auto", "s", "ms")
MILLISECONDS_FROM = 1e11  # as Unix seconds this is the year 5138: a larger number is milliseconds


def parse_timestamp(path, number: int, value: str, unit: str = "auto") -> float:
    """Unix seconds from a number or an ISO 8601 date-time (UTC when it has no zone);
    empty means unknown (0). A number is in ``unit``: seconds, milliseconds, or with
    "auto" milliseconds when it is too large for seconds (shop logs often use them)."""
    value = value.strip()
    if not value:
        return 0.0
    try:
        number_value = float(value)
    except ValueError:
        pass
    else:
        milliseconds = unit == "ms" or (unit == "auto" and number_value >= MILLISECONDS_FROM)
        return number_value / 1000 if milliseconds else number_value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise at(path, number, f"timestamp {value!r} is neither Unix seconds nor an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def group_histories(rows: Iterable[tuple[str, Event]]) -> dict[str, list[Event]]:
    """Group ``(user, event)`` rows per user, each history sorted by time. The sort is
    stable: events with equal (or unknown, 0) timestamps keep their file order."""
    histories: dict[str, list[Event]] = {}
    for user, event in rows:
        histories.setdefault(user, []).append(event)
    for events in histories.values():
        events.sort(key=lambda event: event.timestamp)
    return histories


def describe_item(fields: list[tuple[str, str]]) -> str:
    """One text from an item's named fields: the first (its title) as is, then
    ``"Field name: value"`` for the others; empty values are left out.

    >>> describe_item([("movie_title", "Toy Story"), ("release_year", "1995")])
    'Toy Story. Release year: 1995'
    """
    parts = []
    for position, (name, value) in enumerate(fields):
        value = value.strip()
        if not value:
            continue
        parts.append(value if position == 0 else f"{name.replace('_', ' ').capitalize()}: {value}")
    return ". ".join(parts)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    return path
