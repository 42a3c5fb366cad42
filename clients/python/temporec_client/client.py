"""A thin, typed, synchronous client for the temporec.v1 gRPC API.

Depends only on grpcio, protobuf, grpcio-health-checking and the stubs generated from
the protos into ``temporec_client.v1``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import grpc
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from temporec_client.monitoring import Alert, Ingested, MonitoredText, TopicWindow
from temporec_client.v1 import monitor_pb2, monitor_pb2_grpc, recommender_pb2_grpc
from temporec_client.v1 import recommender_pb2 as pb

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
class Contribution:
    """How much one history event moved an item's score: the score with the whole
    history minus the score without this event."""

    history_index: int  # the event's position in the request's history
    item_id: str  # "" for an event known by its text only
    weight: float


@dataclass
class RecommendedItem:
    item_id: str
    score: float
    text: str
    contributions: list[Contribution] = field(default_factory=list)  # with explain=True, largest first


@dataclass
class HandOff:
    """A domain's advice to pass the request to a human (truthy when it does)."""

    recommended: bool
    confidence: float
    threshold: float
    reason: str = ""

    def __bool__(self) -> bool:
        return self.recommended


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
    hand_off: HandOff | None = None  # set by domains that decide hand-offs (customer_service)
    history_source: str = "request"  # "request", "store" or "store+request" (by user id)
    experiment: str = ""  # the A/B experiment the user is in ("": none), and its arm
    arm: str = ""

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]


@dataclass(frozen=True)
class TrackedEvent:
    """One event of one user, for ``track``: ``event_id`` is yours, unique per user, so a
    retried event is stored once. ``timestamp`` as in ``Event``; None: when it arrives."""

    user_id: str
    event_id: str
    item_id: str = ""
    action: str = ""
    timestamp: float | datetime | None = None
    text: str = ""

    def to_proto(self) -> pb.TrackedEvent:
        return pb.TrackedEvent(
            user_id=self.user_id,
            event_id=self.event_id,
            item_id=self.item_id,
            action=self.action,
            timestamp_ms=_millis(self.timestamp),
            text=self.text,
        )

    @classmethod
    def from_proto(cls, event: pb.TrackedEvent) -> "TrackedEvent":
        return cls(event.user_id, event.event_id, event.item_id, event.action, event.timestamp_ms / 1000, event.text)


@dataclass
class Tracked:
    """What ``track`` stored: new events, retries not stored again, events past retention."""

    stored: int
    duplicates: int
    expired: int = 0


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

    ``target`` is ``host:port``, or any gRPC target. Every call takes ``timeout`` seconds at
    most (override per call). ``secure=True`` uses TLS with the system roots unless ``credentials``
    (``grpc.ChannelCredentials``, e.g. from ``tls_credentials``) are given; ``token`` is
    sent as ``authorization: Bearer <token>``; ``metadata`` (pairs, e.g. an
    ``x-request-id``) is sent with every call.

        with TemporecClient("localhost:50051") as client:
            result = client.recommend("video", history=[Event("v1", "watch")], k=5)

        tls = tls_credentials("ca.pem", "client.pem", "client.key")  # mutual TLS
        with TemporecClient("recs.example.com:50051", credentials=tls, token=token) as client:
            ...

    ``round_robin=True`` spreads the calls over every address of the target, one after the
    other, and skips those that are down: replicas listed by address
    (``"ipv4:10.0.0.1:50051,10.0.0.2:50051"``) or behind one DNS name with several
    addresses (``"dns:///temporec-headless:50051"``). Without it, gRPC uses the first
    address that answers (docs/operations.md#replicas-and-load-balancing).
    """

    def __init__(
        self,
        target: str,
        timeout: float | None = DEFAULT_TIMEOUT,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        options: Sequence[tuple[str, object]] = (),
        token: str | None = None,
        round_robin: bool = False,
    ):
        balancing = [("grpc.lb_policy_name", "round_robin")] if round_robin else []
        options = [("grpc.max_receive_message_length", MAX_RESPONSE_BYTES), *balancing, *options]
        if secure or credentials is not None:
            self._channel = grpc.secure_channel(target, credentials or grpc.ssl_channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._stub = recommender_pb2_grpc.RecommenderStub(self._channel)
        self._monitor = monitor_pb2_grpc.MonitorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.metadata = tuple(metadata or ()) + ((("authorization", f"Bearer {token}"),) if token else ())

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
        options: Mapping[str, object] | None = None,
        explain: bool = False,
        explain_events: int = 0,
    ) -> Recommendation:
        """The ``k`` best next items for ``history`` (oldest first; a plain string is an
        item id). ``candidates`` restricts the answer to those item ids.

        ``options``: the domain's request options by name, e.g. ``{"categories": ["shoes"]}``
        for "retail" (sent as the domain's typed message when the API has one, else as
        text); a typed option of the wrong type (a string for a list, "false" for a
        boolean) raises ValueError before calling. ``explain``: each item's ``contributions``, weighing the ``explain_events``
        most recent events (0: as many as the server allows)."""
        request = pb.RecommendRequest(
            domain=domain,
            head=head,
            encoder=encoder,
            user_id=user_id,
            history=[(Event(e) if isinstance(e, str) else e).to_proto() for e in history],
            candidate_item_ids=list(candidates),
            k=k,
            allow_repeats=allow_repeats,
            explain=explain,
            explain_events=explain_events,
            **_options(domain, options or {}),
        )
        response = self._call(self._stub.Recommend, request, timeout)
        return Recommendation(
            items=[_item(i) for i in response.items],
            domain=response.domain,
            head=response.head,
            encoder=response.encoder,
            model_version=response.model_version,
            cold_start=response.cold_start,
            candidate_source=response.candidate_source,
            rules_applied=list(response.rules_applied),
            timings_ms={t.stage: t.milliseconds for t in response.timings},
            hand_off=_hand_off(response),
            history_source=response.history_source,
            experiment=response.experiment,
            arm=response.arm,
        )

    def track(self, events: Iterable[TrackedEvent], timeout: float | None = None) -> Tracked:
        """Store ``events`` in the server's store; safe to retry: an event id is stored once."""
        request = pb.TrackRequest(events=[e.to_proto() for e in events])
        response = self._call(self._stub.Track, request, timeout)
        return Tracked(response.stored, response.duplicates, response.expired)

    def track_stream(self, batches: Iterable[Iterable[TrackedEvent]], timeout: float | None = None) -> Tracked:
        """Bulk ingestion: each batch of ``batches`` one message of one TrackStream call."""
        requests = (pb.TrackStreamRequest(events=[e.to_proto() for e in batch]) for batch in batches)
        response = self._call(self._stub.TrackStream, requests, timeout)
        return Tracked(response.stored, response.duplicates, response.expired)

    def get_history(self, user_id: str, limit: int = 0, timeout: float | None = None) -> list[TrackedEvent]:
        """The events the server's store holds for ``user_id``, oldest first (the ``limit``
        most recent; 0: all)."""
        response = self._call(self._stub.GetHistory, pb.GetHistoryRequest(user_id=user_id, limit=limit), timeout)
        return [TrackedEvent.from_proto(e) for e in response.events]

    def forget_user(self, user_id: str, timeout: float | None = None) -> int:
        """Remove every stored event of ``user_id``; returns how many went."""
        return self._call(self._stub.ForgetUser, pb.ForgetUserRequest(user_id=user_id), timeout).removed

    def list_components(self, timeout: float | None = None) -> Components:
        """The installed encoders, heads and domains, and the loaded models."""
        response = self._call(self._stub.ListComponents, pb.ListComponentsRequest(), timeout)
        components = lambda items: [Component(c.name, c.plugin, c.description, dict(c.details)) for c in items]  # noqa: E731
        models = [
            Model(
                m.domain,
                m.head,
                m.encoder,
                m.version,
                m.data_name,
                m.data_fingerprint,
                dict(m.metrics),
                m.items,
                m.created,
            )
            for m in response.models
        ]
        return Components(
            components(response.encoders), components(response.heads), components(response.domains), models
        )

    def encode(
        self, texts: Iterable[str], encoder: str = "", timeout: float | None = None, model_version: str = ""
    ) -> Embeddings:
        """Embed ``texts`` with ``encoder`` (default: the server's default encoder), or with
        the encoder of the loaded model ``model_version`` (its tuned one, if it has one)."""
        request = pb.EncodeRequest(texts=list(texts), encoder=encoder, model_version=model_version)
        response = self._call(self._stub.Encode, request, timeout)
        return Embeddings(response.encoder, response.dim, [list(e.values) for e in response.embeddings])

    # -- the Monitor service (docs/finance.md) ---------------------------------------------

    def ingest(self, batches: Iterable[Iterable[MonitoredText]], timeout: float | None = None) -> Ingested:
        """Stream published texts: each batch of ``batches`` one message of one Ingest
        call, classified and kept as it arrives; safe to retry (a text id counts once)."""
        requests = (monitor_pb2.IngestRequest(texts=[t.to_proto(_millis) for t in batch]) for batch in batches)
        return Ingested.from_proto(self._call(self._monitor.Ingest, requests, timeout))

    def watch_alerts(self, subscriber_id: str, topics: Iterable[str] = (), timeout: float | None = None):
        """The subscriber's alerts, as they fire: first those it has not acknowledged. An
        iterator that waits for the next alert; it ends when the server stops, when
        ``timeout`` (seconds; default: none) passes, or when ``close()`` cancels it."""
        request = monitor_pb2.WatchAlertsRequest(subscriber_id=subscriber_id, topics=list(topics))
        stream = self._monitor.WatchAlerts(request, timeout=timeout, metadata=self.metadata)
        return _AlertStream(stream)

    def acknowledge_alerts(self, subscriber_id: str, sequence: int, timeout: float | None = None) -> int:
        """Acknowledge the subscriber's alerts up to ``sequence``; returns its mark now."""
        request = monitor_pb2.AcknowledgeAlertsRequest(subscriber_id=subscriber_id, sequence=sequence)
        return self._call(self._monitor.AcknowledgeAlerts, request, timeout).acknowledged

    def topic_series(self, topic: str, timeout: float | None = None) -> tuple[list[TopicWindow], list[str]]:
        """``topic``'s closed windows with their forecasts, and every topic the monitor knows."""
        response = self._call(self._monitor.GetTopicSeries, monitor_pb2.GetTopicSeriesRequest(topic=topic), timeout)
        return [TopicWindow.from_proto(w) for w in response.windows], list(response.topics)

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


class _AlertStream:
    """Iterates a WatchAlerts call as ``Alert``s; ``close()`` cancels it."""

    def __init__(self, call):
        self._call = call

    def __iter__(self):
        try:
            for response in self._call:
                yield Alert.from_proto(response.alert)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise TemporecError(exc.code(), exc.details() or "") from exc

    def close(self) -> None:
        self._call.cancel()


def _options(domain: str, options: Mapping[str, object]) -> dict:
    """RecommendRequest fields for ``options``: the domain's typed message
    (``<domain>_options``) when the API has one, else ``plugin_options`` as text."""
    if not options:
        return {}
    typed = pb.RecommendRequest.DESCRIPTOR.fields_by_name.get(f"{domain}_options")
    if typed is None or typed.containing_oneof is None:
        return {"plugin_options": {name: _option_text(value) for name, value in options.items()}}
    known = typed.message_type.fields_by_name
    values = {}
    for name, value in options.items():
        if name not in known:
            names = ", ".join(sorted(known))
            raise ValueError(f"options.{name}: domain {domain!r} has no such option; allowed: {names}")
        values[name] = _typed_option(name, known[name], value)
    return {typed.name: values}


def _typed_option(name: str, field: FieldDescriptor, value: object) -> object:
    """``value`` for ``field`` of a typed options message, checked first: the message
    would split a string given for a list into characters and read 1 as True. None
    leaves the option unset (the domain's default)."""
    if value is None:
        return None
    expected, fits = _option_kind(field)
    if not field.is_repeated:
        if not fits(value):
            raise ValueError(f"options.{name}: expected {expected}, got {value!r}")
        return value
    listed = "a list of strings" if field.cpp_type == FieldDescriptor.CPPTYPE_STRING else f"a list, each {expected}"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"options.{name}: expected {listed}, got {value!r}")
    values = list(value)
    if not all(map(fits, values)):
        raise ValueError(f"options.{name}: expected {listed}, got {values!r}")
    return values


_NUMBERS = {
    FieldDescriptor.CPPTYPE_DOUBLE,
    FieldDescriptor.CPPTYPE_FLOAT,
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}


def _option_kind(field: FieldDescriptor) -> tuple[str, Callable[[object], bool]]:
    """What one value of ``field`` must be, and the test of it."""
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return "a string", lambda value: isinstance(value, str)
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return "a boolean (True or False)", lambda value: isinstance(value, bool)
    if field.cpp_type in _NUMBERS:  # the server refuses negative and non-finite options too
        return "a finite number, not negative", _is_size
    return "a value", lambda value: True  # other kinds: the message's own checks


def _is_size(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _option_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _item(item: pb.RecommendedItem) -> RecommendedItem:
    contributions = [Contribution(c.history_index, c.item_id, c.weight) for c in item.contributions]
    return RecommendedItem(item.item_id, item.score, item.text, contributions)


def _hand_off(response: pb.RecommendResponse) -> HandOff | None:
    if not response.HasField("hand_off"):
        return None
    hand_off = response.hand_off
    return HandOff(hand_off.recommended, hand_off.confidence, hand_off.threshold, hand_off.reason)


def tls_credentials(
    root_certificates: str | os.PathLike | None = None,
    certificate_chain: str | os.PathLike | None = None,
    private_key: str | os.PathLike | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files: ``root_certificates``, the CA that signed the
    server's certificate (None: the system roots); for mutual TLS, the client's
    ``certificate_chain`` and its ``private_key``."""
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("tls_credentials: give certificate_chain and private_key together (mutual TLS), or neither")
    read = lambda path: None if path is None else Path(path).read_bytes()  # noqa: E731
    return grpc.ssl_channel_credentials(read(root_certificates), read(private_key), read(certificate_chain))


def _millis(timestamp: float | datetime | None) -> int:
    if timestamp is None:
        return 0
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("Event.timestamp: use a timezone-aware datetime (or Unix seconds)")
        timestamp = timestamp.timestamp()
    return round(timestamp * 1000)
