"""Request checks before any model runs: malformed values are INVALID_ARGUMENT, sizes
past a configured limit RESOURCE_EXHAUSTED; each message names the field."""

from __future__ import annotations

from temporec.contract.errors import InvalidArgument, ResourceExhausted, allowed
from temporec.contract.stores import TrackedEvent
from temporec.contract.types import Event, Limits, Query


def check_limits(query: Query, limits: Limits) -> None:
    if query.k < 1:
        raise InvalidArgument(f"k: must be at least 1, got {query.k}")
    if query.explain_events < 0:
        raise InvalidArgument(f"explain_events: must not be negative, got {query.explain_events}")
    for name, size, key in (
        ("k", query.k, "max_k"),
        ("history", len(query.history), "max_history"),
        ("candidate_item_ids", len(query.candidates), "max_candidates"),
        ("explain_events", query.explain_events, "max_explain_events"),
    ):
        if size > getattr(limits, key):
            raise ResourceExhausted(f"{name}: at most {getattr(limits, key)} (limits.{key}), got {size}")


def check_event(
    i: int, event: Event, actions: list[str] | None, previous_time: float, limits: Limits, where: str = "history"
) -> None:
    """``history[i]``, given the model's actions (None: any, checked when a model reads it)
    and the time of the event before it; ``where`` names the request's field."""
    if not event.item_id and not event.text:
        raise InvalidArgument(f"{where}[{i}]: an event needs an item_id, a text, or both")
    if len(event.item_id) > limits.max_item_id_chars:
        raise ResourceExhausted(
            f"{where}[{i}].item_id: longer than {limits.max_item_id_chars} characters (limits.max_item_id_chars)"
        )
    if len(event.text) > limits.max_text_chars:
        raise ResourceExhausted(
            f"{where}[{i}].text: longer than {limits.max_text_chars} characters (limits.max_text_chars)"
        )
    if actions is not None and event.action and event.action not in actions:
        raise InvalidArgument(f"{where}[{i}].action: {event.action!r} is not allowed; allowed: {allowed(actions)}")
    if event.timestamp < 0:
        raise InvalidArgument(f"{where}[{i}].timestamp: must not be negative")
    if event.timestamp and event.timestamp < previous_time:
        raise InvalidArgument(
            f"history[{i}].timestamp: earlier than the event before it; send the history oldest first"
        )


def check_after(history: list[Event], last_stored: float) -> None:
    """The request's events follow the stored ones: none may be older than the last of them."""
    for i, event in enumerate(history):
        if event.timestamp and event.timestamp < last_stored:
            raise InvalidArgument(
                f"history[{i}].timestamp: earlier than the user's last stored event; the request's "
                "events follow the stored ones: send only the events not tracked yet"
            )


def check_tracked(events: list[TrackedEvent], limits: Limits) -> None:
    """The events of a ``Track`` call: any order, any users; each names its user and event."""
    if not events:
        raise InvalidArgument("events: send at least one event")
    if len(events) > limits.max_track_events:
        raise ResourceExhausted(
            f"events: at most {limits.max_track_events} events (limits.max_track_events), got {len(events)}"
        )
    for i, tracked in enumerate(events):
        for name in ("user_id", "event_id"):
            check_id(f"events[{i}].{name}", getattr(tracked, name), limits)
        check_event(i, tracked.event, None, 0.0, limits, where="events")


def check_id(field: str, value: str, limits: Limits) -> None:
    """A user or event id: required, and no longer than an item id may be."""
    if not value:
        raise InvalidArgument(f"{field}: required")
    if len(value) > limits.max_item_id_chars:
        raise ResourceExhausted(
            f"{field}: longer than {limits.max_item_id_chars} characters (limits.max_item_id_chars)"
        )


def check_texts(texts: list[str], limits: Limits) -> None:
    """The texts of an ``Encode`` call."""
    if not texts:
        raise InvalidArgument("texts: send at least one text")
    if len(texts) > limits.max_encode_texts:
        raise ResourceExhausted(
            f"texts: at most {limits.max_encode_texts} texts (limits.max_encode_texts), got {len(texts)}"
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise ResourceExhausted(
                f"texts[{i}]: longer than {limits.max_text_chars} characters (limits.max_text_chars)"
            )
