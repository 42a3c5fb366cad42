"""Pure conversions between the temporec.v1 messages and the core's types.

Request options travel as one typed message per built-in domain (the ``domain_options``
oneof, each field named ``<domain>_options``) or as ``plugin_options`` by name; both
become ``Query.options``, a mapping of the options set, which the service validates
against the domain's declared ``request_options``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporec.contract.errors import InvalidArgument
from temporec.contract.stores import TrackedEvent
from temporec.contract.types import (
    Event,
    Query,
    Recommendation,
    ScoredItem,
)
from temporec.monitor.alerts import Alert
from temporec.monitor.monitor import IncomingText, IngestResult
from temporec.monitor.windows import ClosedWindow
from temporec.serving.records import ComponentInfo, Components, ModelInfo, TrackResult
from temporec.v1 import monitor_pb2 as monitor_pb
from temporec.v1 import recommender_pb2 as pb

ONEOF = "domain_options"
SUFFIX = "_options"
#: domain name -> the RecommendRequest field of its typed options message
TYPED_OPTIONS = {
    field.name.removesuffix(SUFFIX): field.name for field in pb.RecommendRequest.DESCRIPTOR.oneofs_by_name[ONEOF].fields
}


def event_from_proto(event: pb.Event) -> Event:
    return Event(event.item_id, event.action, event.timestamp_ms / 1000, event.text)


def tracked_from_proto(event: pb.TrackedEvent) -> TrackedEvent:
    return TrackedEvent(
        event.user_id, event.event_id, Event(event.item_id, event.action, event.timestamp_ms / 1000, event.text)
    )


def tracked_to_proto(tracked: TrackedEvent) -> pb.TrackedEvent:
    event = tracked.event
    return pb.TrackedEvent(
        user_id=tracked.user_id,
        event_id=tracked.event_id,
        item_id=event.item_id,
        action=event.action,
        timestamp_ms=round(event.timestamp * 1000),
        text=event.text,
    )


def track_to_proto(result: TrackResult) -> pb.TrackResponse:
    return pb.TrackResponse(stored=result.stored, duplicates=result.duplicates, expired=result.expired)


def query_from_proto(request: pb.RecommendRequest) -> Query:
    return Query(
        domain=request.domain,
        history=[event_from_proto(event) for event in request.history],
        head=request.head,
        encoder=request.encoder,
        user_id=request.user_id,
        candidates=list(request.candidate_item_ids),
        k=request.k,
        allow_repeats=request.allow_repeats,
        options=options_from_proto(request),
        explain=request.explain,
        explain_events=request.explain_events,
    )


def options_from_proto(request: pb.RecommendRequest) -> dict[str, Any] | None:
    """The options a request sets, by name (None: none); typed options must be those of
    the request's domain."""
    typed = request.WhichOneof(ONEOF)
    if typed is None:
        return dict(request.plugin_options) or None
    if request.plugin_options:
        raise InvalidArgument(f"plugin_options: set either {typed} or plugin_options, not both")
    owner = typed.removesuffix(SUFFIX)
    if owner != request.domain:
        use = TYPED_OPTIONS.get(request.domain, "plugin_options")
        raise InvalidArgument(
            f"{typed}: these are the options of domain {owner!r}, but the request is for domain "
            f"{request.domain!r}; use {use}"
        )
    fields = getattr(request, typed).ListFields()
    return {field.name: list(value) if field.is_repeated else value for field, value in fields}


def recommendation_to_proto(recommendation: Recommendation) -> pb.RecommendResponse:
    hand_off = recommendation.hand_off
    return pb.RecommendResponse(
        items=[item_to_proto(item) for item in recommendation.items],
        domain=recommendation.domain,
        head=recommendation.head,
        encoder=recommendation.encoder,
        model_version=recommendation.model_version,
        cold_start=recommendation.cold_start,
        candidate_source=recommendation.candidate_source,
        rules_applied=recommendation.rules_applied,
        timings=[pb.StageTiming(stage=s, milliseconds=ms) for s, ms in recommendation.timings_ms.items()],
        hand_off=pb.HandOff(**dataclasses.asdict(hand_off)) if hand_off is not None else None,
        history_source=recommendation.history_source,
        experiment=recommendation.experiment,
        arm=recommendation.arm,
    )


def item_to_proto(item: ScoredItem) -> pb.RecommendedItem:
    contributions = [pb.Contribution(**dataclasses.asdict(c)) for c in item.contributions]
    return pb.RecommendedItem(item_id=item.item_id, score=item.score, text=item.text, contributions=contributions)


def component_to_proto(info: ComponentInfo) -> pb.Component:
    return pb.Component(name=info.name, plugin=info.plugin, description=info.description, details=info.details)


def model_to_proto(info: ModelInfo) -> pb.Model:
    # info.path stays on the server: clients have no use for the server's file layout.
    return pb.Model(
        domain=info.domain,
        head=info.head,
        encoder=info.encoder,
        version=info.version,
        data_name=info.data_name,
        data_fingerprint=info.data_fingerprint,
        metrics=info.metrics,
        items=info.items,
        created=info.created,
    )


def components_to_proto(components: Components) -> pb.ListComponentsResponse:
    return pb.ListComponentsResponse(
        encoders=[component_to_proto(c) for c in components.encoders],
        heads=[component_to_proto(c) for c in components.heads],
        domains=[component_to_proto(c) for c in components.domains],
        models=[model_to_proto(m) for m in components.models],
    )


def embeddings_to_proto(encoder: str, vectors: Any) -> pb.EncodeResponse:
    """``vectors``: (n, dim), one row per text, as the service returns them (``.tolist()``,
    ``.shape``); the transport reads no tensor otherwise."""
    return pb.EncodeResponse(
        embeddings=[pb.Embedding(values=row) for row in vectors.tolist()],
        encoder=encoder,
        dim=vectors.shape[1],
    )


# -- the Monitor service ----------------------------------------------------------------


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def incoming_from_proto(text: monitor_pb.MonitoredText) -> IncomingText:
    return IncomingText(text.id, text.text, text.timestamp_ms / 1000, text.source)


def ingest_to_proto(result: IngestResult, messages: int) -> monitor_pb.IngestResponse:
    return monitor_pb.IngestResponse(
        stored=result.stored,
        duplicates=result.duplicates,
        late=result.late,
        labels=dict(result.labels),
        alerts=result.alerts,
        messages=messages,
    )


def alert_to_proto(alert: Alert) -> monitor_pb.Alert:
    return monitor_pb.Alert(
        sequence=alert.sequence,
        topic=alert.topic,
        window_start_ms=ms(alert.window_start),
        window_end_ms=ms(alert.window_end),
        kind=alert.kind,
        observed=alert.observed,
        expected=alert.expected,
        low=alert.low,
        high=alert.high,
        count=alert.count,
        negatives=alert.negatives,
        model=alert.model,
        texts=[
            monitor_pb.AlertText(
                id=t.text_id,
                text=t.text,
                timestamp_ms=ms(t.timestamp),
                source=t.source,
                negative_probability=t.negative_probability,
            )
            for t in alert.texts
        ],
    )


def window_to_proto(window: ClosedWindow) -> monitor_pb.TopicWindow:
    message = monitor_pb.TopicWindow(window_start_ms=ms(window.start), count=window.count, negatives=window.negatives)
    forecast = window.forecast
    if forecast is not None:
        message.count_expected, message.count_high = forecast.count, forecast.count_high
        message.share_expected, message.share_high = forecast.share, forecast.share_high
    return message
