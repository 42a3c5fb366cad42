"""Typed request options of the domains.

Each domain declares the options a request may set as a dataclass
(``Domain.request_options``; every field has a default, so a request that sets none gets
the defaults). A request's options arrive as ``Query.options``: an instance of that
dataclass, or a mapping from option names to values as a transport carries them, strings
("true", "0.5", "a,b") or already typed values. The service reads them with
``read_options`` before any rule runs, so unknown names and unreadable values are refused
with ``InvalidArgument`` naming ``options.<name>`` and what is allowed, whether or not
the domain's rules would read them; the rules then find the dataclass in
``query.options``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from temporec.contract.errors import InvalidArgument, allowed
from temporec.contract.types import Query

T = TypeVar("T")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclasses.dataclass
class NoOptions:
    """The options of a domain that declares none: any option is refused."""


def read_options(query: Query, cls: type[T]) -> T:
    """The options of ``query`` as ``cls`` (the defaults when the query carries none)."""
    raw = query.options
    if raw is None:
        return cls()
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"options: expected {cls.__name__} or named options, got {type(raw).__name__}")
    return options_from_mapping(cls, raw)


def options_from_mapping(cls: type[T], raw: Mapping[str, Any]) -> T:
    """``cls`` built from a mapping of option names to values (strings or typed)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in raw.items():
        if name not in fields:
            raise InvalidArgument(f"options.{name}: unknown option; allowed: {allowed(fields)}")
        values[name] = _convert(name, value, option_default(fields[name]))
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # a domain's own checks, e.g. in __post_init__
        raise InvalidArgument(f"options: {exc}") from exc


def option_defaults(cls: type) -> dict[str, Any]:
    """Each option of ``cls`` with its default (for listings such as ListComponents)."""
    return {f.name: option_default(f) for f in dataclasses.fields(cls)}


def option_default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def option_text(value: Any) -> str:
    """An option's value as a transport's text carries it: lists comma-separated,
    booleans "true"/"false" (``options_from_mapping`` reads it back)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


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
        if not math.isfinite(number) or number < 0:
            raise InvalidArgument(f"options.{name}: {number} must be a finite number, not negative")
        return number
    return str(value)
