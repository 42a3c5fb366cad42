"""The way back from protobuf to the core's types, which only the tests need: they build
requests from ``Query`` objects and read responses as ``Recommendation`` objects."""

from __future__ import annotations

import dataclasses
from typing import Any

from temporec.contract.options import option_text
from temporec.contract.types import (
    Contribution,
    Event,
    HandOff,
    Query,
    Recommendation,
    ScoredItem,
)
from temporec.grpc.translate import TYPED_OPTIONS
from temporec.v1 import recommender_pb2 as pb


def event_to_proto(event: Event) -> pb.Event:
    return pb.Event(
        item_id=event.item_id, action=event.action, timestamp_ms=round(event.timestamp * 1000), text=event.text
    )


def query_to_proto(query: Query) -> pb.RecommendRequest:
    return pb.RecommendRequest(
        domain=query.domain,
        head=query.head,
        encoder=query.encoder,
        user_id=query.user_id,
        history=[event_to_proto(event) for event in query.history],
        candidate_item_ids=query.candidates,
        k=query.k,
        allow_repeats=query.allow_repeats,
        explain=query.explain,
        explain_events=query.explain_events,
        **options_to_proto(query.domain, query.options),
    )


def options_to_proto(domain: str, options: object | None) -> dict[str, Any]:
    """RecommendRequest fields for ``options`` (a dataclass or a mapping): the domain's
    typed message when it has one, else ``plugin_options`` as text."""
    if options is None:
        return {}
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    if domain in TYPED_OPTIONS:
        return {TYPED_OPTIONS[domain]: values}
    return {"plugin_options": {name: option_text(value) for name, value in values.items()}}


def item_from_proto(item: pb.RecommendedItem) -> ScoredItem:
    contributions = [Contribution(c.history_index, c.item_id, c.weight) for c in item.contributions]
    return ScoredItem(item.item_id, item.score, item.text, contributions)


def recommendation_from_proto(response: pb.RecommendResponse) -> Recommendation:
    return Recommendation(
        items=[item_from_proto(i) for i in response.items],
        domain=response.domain,
        head=response.head,
        encoder=response.encoder,
        model_version=response.model_version,
        cold_start=response.cold_start,
        candidate_source=response.candidate_source,
        rules_applied=list(response.rules_applied),
        timings_ms={t.stage: t.milliseconds for t in response.timings},
        hand_off=hand_off_from_proto(response),
    )


def hand_off_from_proto(response: pb.RecommendResponse) -> HandOff | None:
    if not response.HasField("hand_off"):
        return None
    hand_off = response.hand_off
    return HandOff(hand_off.recommended, hand_off.confidence, hand_off.threshold, hand_off.reason)
