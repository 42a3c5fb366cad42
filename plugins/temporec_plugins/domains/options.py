"""Typed request options of the domains.

Each domain declares its options as a dataclass (every field with a default: a request
that sets none gets the defaults). A request's options reach the domain as
``query.options``, either an instance of that dataclass or a mapping from option names to
values, as a transport carries them: strings ("true", "0.5", "a,b") or already typed
values. Unknown names and unreadable values raise ``InvalidArgument`` naming
``options.<name>`` and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from temporec.errors import InvalidArgument, allowed
from temporec.types import Query

T = TypeVar("T")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def read_options(query: Query, cls: type[T]) -> T:
    """The options of ``query`` as ``cls`` (the defaults when the query carries none)."""
    raw = getattr(query, "options", None)
    if raw is None:
        return cls()
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"options: expected named options, got {type(raw).__name__}")
    return options_from_mapping(cls, raw)


def options_from_mapping(cls: type[T], raw: Mapping[str, Any]) -> T:
    """``cls`` built from a mapping of option names to values (strings or typed)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in raw.items():
        if name not in fields:
            raise InvalidArgument(f"options.{name}: unknown option; allowed: {allowed(fields)}")
        values[name] = _convert(name, value, _default(fields[name]))
    return cls(**values)


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _convert(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``."""
    if isinstance(default, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        return [str(item).strip() for item in items if str(item).strip()]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in TRUE + FALSE:
            raise InvalidArgument(f"options.{name}: {value!r} is not a boolean; allowed: {allowed(TRUE + FALSE)}")
        return text in TRUE
    if isinstance(default, (int, float)):
        try:
            number = type(default)(value)
        except (TypeError, ValueError):
            raise InvalidArgument(f"options.{name}: {value!r} is not a number") from None
        if number < 0:
            raise InvalidArgument(f"options.{name}: {number} must not be negative")
        return number
    return str(value)
