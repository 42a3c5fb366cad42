"""A thin, typed, synchronous client for the temporec.v1 gRPC API.

Depends only on grpcio, protobuf, grpcio-health-checking and the stubs generated from
the protos into ``temporec_client.v1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from temporec_client.v1 import recommender_pb2 as pb
from temporec_client.v1 import recommender_pb2_grpc

DEFAULT_TIMEOUT = 10.0  # seconds, per call
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # Encode answers can be large: 1024 texts x dim floats


class TemporecError(Exception):
    """A call failed; ``code`` is the ``grpc.StatusCode``, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Event:
    """One step of a user's history.

    ``timestamp`` is Unix seconds (float) or a timezone-aware ``datetime``; None or 0
    means unknown. ``text`` describes an item the server's catalog does not know.
    """

    item_id: str = ""
    action: str = ""
    timestamp: float | datetime | None = None
    text: str = ""

    def to_proto(self) -> pb.Event:
        return pb.Event(item_id=self.item_id, action=self.action, timestamp_ms=_millis(self.timestamp), text=self.text)


@dataclass
class RecommendedItem:
    item_id: str
    score: float
    text: str


@dataclass
class Recommendation:
    items: list[RecommendedItem]
    domain: str
    head: str
    encoder: str
    model_version: str
    cold_start: bool
    candidate_source: str
    rules_applied: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]


@dataclass
class Component:
    name: str
    plugin: str
    description: str
    details: dict[str, str]


@dataclass
class Model:
    domain: str
    head: str
    encoder: str
    version: str
    data_name: str
    data_fingerprint: str
    metrics: dict[str, float]
    items: int
    created: str


@dataclass
class Components:
    encoders: list[Component]
    heads: list[Component]
    domains: list[Component]
    models: list[Model]


@dataclass
class Embeddings:
    encoder: str
    dim: int
    vectors: list[list[float]]  # one per text, L2-normalized


class TemporecClient:
    """A connection to a temporec server.

    ``target`` is ``host:port``. Every call takes ``timeout`` seconds at most (override
    per call). ``secure=True`` uses TLS with the system roots unless ``credentials``
    (``grpc.ChannelCredentials``) are given; ``metadata`` (pairs) is sent with every call.

        with TemporecClient("localhost:50051") as client:
            result = client.recommend("video", history=[Event("v1", "watch")], k=5)
    """

    def __init__(
        self,
        target: str,
        timeout: float | None = DEFAULT_TIMEOUT,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        options: Sequence[tuple[str, object]] = (),
    ):
        options = [("grpc.max_receive_message_length", MAX_RESPONSE_BYTES), *options]
        if secure or credentials is not None:
            self._channel = grpc.secure_channel(target, credentials or grpc.ssl_channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._stub = recommender_pb2_grpc.RecommenderStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.metadata = tuple(metadata or ())

    def recommend(
        self,
        domain: str,
        history: Iterable[Event | str] = (),
        k: int = 10,
        head: str = "",
        encoder: str = "",
        candidates: Iterable[str] = (),
        allow_repeats: bool = False,
        user_id: str = "",
        timeout: float | None = None,
    ) -> Recommendation:
        """The ``k`` best next items for ``history`` (oldest first; a plain string is an
        item id). ``candidates`` restricts the answer to those item ids."""
        request = pb.RecommendRequest(
            domain=domain,
            head=head,
            encoder=encoder,
            user_id=user_id,
            history=[(Event(e) if isinstance(e, str) else e).to_proto() for e in history],
            candidate_item_ids=list(candidates),
            k=k,
            allow_repeats=allow_repeats,
        )
        response = self._call(self._stub.Recommend, request, timeout)
        return Recommendation(
            items=[RecommendedItem(i.item_id, i.score, i.text) for i in response.items],
            domain=response.domain,
            head=response.head,
            encoder=response.encoder,
            model_version=response.model_version,
            cold_start=response.cold_start,
            candidate_source=response.candidate_source,
            rules_applied=list(response.rules_applied),
            timings_ms={t.stage: t.milliseconds for t in response.timings},
        )

    def list_components(self, timeout: float | None = None) -> Components:
        """The installed encoders, heads and domains, and the loaded models."""
        response = self._call(self._stub.ListComponents, pb.ListComponentsRequest(), timeout)
        components = lambda items: [Component(c.name, c.plugin, c.description, dict(c.details)) for c in items]  # noqa: E731
        models = [
            Model(m.domain, m.head, m.encoder, m.version, m.data_name, m.data_fingerprint, dict(m.metrics), m.items, m.created)
            for m in response.models
        ]
        return Components(components(response.encoders), components(response.heads), components(response.domains), models)

    def encode(self, texts: Iterable[str], encoder: str = "", timeout: float | None = None) -> Embeddings:
        """Embed ``texts`` with ``encoder`` (default: the server's default encoder)."""
        request = pb.EncodeRequest(texts=list(texts), encoder=encoder)
        response = self._call(self._stub.Encode, request, timeout)
        return Embeddings(response.encoder, response.dim, [list(e.values) for e in response.embeddings])

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The server's health status name: "SERVING", "NOT_SERVING", ... ``service`` ""
        is the whole server; "temporec.v1.Recommender" the recommender alone."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "TemporecClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method, request, timeout: float | None):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise TemporecError(exc.code(), exc.details() or "") from exc


def _millis(timestamp: float | datetime | None) -> int:
    if timestamp is None:
        return 0
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("Event.timestamp: use a timezone-aware datetime (or Unix seconds)")
        timestamp = timestamp.timestamp()
    return round(timestamp * 1000)
