"""Pure conversions between the temporec.v1 messages and the core's types.

Request options travel as one typed message per built-in domain (the ``domain_options``
oneof, each field named ``<domain>_options``) or as ``plugin_options`` by name; both
become ``Query.options``, a mapping of the options set, which the service validates
against the domain's declared ``request_options``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from temporec.errors import InvalidArgument
from temporec.options import option_text
from temporec.service import ComponentInfo, Components, ModelInfo
from temporec.types import Contribution, Event, HandOff, Query, Recommendation, ScoredItem
from temporec.v1 import recommender_pb2 as pb

if TYPE_CHECKING:
    import torch

ONEOF = "domain_options"
SUFFIX = "_options"
#: domain name -> the RecommendRequest field of its typed options message
TYPED_OPTIONS = {
    field.name.removesuffix(SUFFIX): field.name for field in pb.RecommendRequest.DESCRIPTOR.oneofs_by_name[ONEOF].fields
}


def event_from_proto(event: pb.Event) -> Event:
    return Event(event.item_id, event.action, event.timestamp_ms / 1000, event.text)


def event_to_proto(event: Event) -> pb.Event:
    return pb.Event(
        item_id=event.item_id, action=event.action, timestamp_ms=round(event.timestamp * 1000), text=event.text
    )


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
    )


def item_to_proto(item: ScoredItem) -> pb.RecommendedItem:
    contributions = [pb.Contribution(**dataclasses.asdict(c)) for c in item.contributions]
    return pb.RecommendedItem(item_id=item.item_id, score=item.score, text=item.text, contributions=contributions)


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


def embeddings_to_proto(encoder: str, vectors: "torch.Tensor") -> pb.EncodeResponse:
    """``vectors`` is an (n, dim) tensor, one row per text."""
    return pb.EncodeResponse(
        embeddings=[pb.Embedding(values=row) for row in vectors.tolist()],
        encoder=encoder,
        dim=vectors.shape[1],
    )
