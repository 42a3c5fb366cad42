"""Pure conversions between the temporec.v1 messages and the core's types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporec.service import ComponentInfo, Components, ModelInfo
from temporec.types import Event, Query, Recommendation, ScoredItem
from temporec.v1 import recommender_pb2 as pb

if TYPE_CHECKING:
    import torch


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
    )


def recommendation_to_proto(recommendation: Recommendation) -> pb.RecommendResponse:
    return pb.RecommendResponse(
        items=[pb.RecommendedItem(item_id=i.item_id, score=i.score, text=i.text) for i in recommendation.items],
        domain=recommendation.domain,
        head=recommendation.head,
        encoder=recommendation.encoder,
        model_version=recommendation.model_version,
        cold_start=recommendation.cold_start,
        candidate_source=recommendation.candidate_source,
        rules_applied=recommendation.rules_applied,
        timings=[pb.StageTiming(stage=s, milliseconds=ms) for s, ms in recommendation.timings_ms.items()],
    )


def recommendation_from_proto(response: pb.RecommendResponse) -> Recommendation:
    return Recommendation(
        items=[ScoredItem(i.item_id, i.score, i.text) for i in response.items],
        domain=response.domain,
        head=response.head,
        encoder=response.encoder,
        model_version=response.model_version,
        cold_start=response.cold_start,
        candidate_source=response.candidate_source,
        rules_applied=list(response.rules_applied),
        timings_ms={t.stage: t.milliseconds for t in response.timings},
    )


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
