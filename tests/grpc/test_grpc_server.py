"""The gRPC server end to end: a real server on a loopback port, the real client."""

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from hypothesis import given
from hypothesis import strategies as st

import proto_helpers
from conftest import (
    TINY_FAIL_TEXT,
    TINY_WAIT_TEXT,
    TinyEncoder,
    tiny_dataset,
    tiny_encoder_gate,
)
from temporec.contract.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PluginError,
    ResourceExhausted,
    Unavailable,
)
from temporec.contract.types import Event as CoreEvent
from temporec.contract.types import Query, Recommendation, ScoredItem
from temporec.grpc import TemporecServer, translate
from temporec.grpc.status import to_status
from temporec.serving.config import ServerConfig
from temporec.serving.service import Limits, RecommenderService
from temporec_client import Event, TemporecClient, TemporecError

Code = grpc.StatusCode
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def client(grpc_server):
    with TemporecClient(grpc_server.target, timeout=30) as client:
        yield client


def history(*item_ids):
    return [Event(item, "view", T0 + 60 * i) for i, item in enumerate(item_ids)]


# -- the API ------------------------------------------------------------------------


def test_recommend_ranks_unseen_items_best_first(client):
    result = client.recommend("tiny", history=history("v1", "v2"), k=5)
    assert len(result.items) == 5 and not {"v1", "v2"} & set(result.item_ids)
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    assert result.items[0].text.startswith("video number ")
    assert (result.domain, result.head, result.encoder) == ("tiny", "tiny-mean", "tiny-hash")
    assert result.model_version and not result.cold_start and result.candidate_source == "catalog"
    assert result.rules_applied == ["exclude_history"]
    assert {"encode", "rules", "head", "score"} <= set(result.timings_ms)


def test_empty_history_is_a_cold_start(client):
    result = client.recommend("tiny", history=[], k=3)
    assert result.cold_start and result.head == "popularity" and len(result.items) == 3


def test_candidates_restrict_the_answer(client):
    result = client.recommend("tiny", history=history("v1"), candidates=["v3", "v4", "v1"], k=10, allow_repeats=True)
    assert set(result.item_ids) == {"v1", "v3", "v4"} and result.candidate_source == "request"


def test_an_item_outside_the_catalog_is_used_through_its_text(client):
    events = [Event("new-upload", "view", T0, text="a brand new video"), Event("v2", "like", T0 + 60)]
    assert len(client.recommend("tiny", history=events, k=4).items) == 4


def test_list_components_describes_plugins_and_models(client):
    components = client.list_components()
    assert [c.name for c in components.encoders] == ["tiny-hash"]
    assert [c.name for c in components.heads] == ["tiny-mean"]
    (domain,) = components.domains
    assert domain.name == "tiny" and domain.plugin == "tiny" and domain.details["actions"] == "view,like"
    assert domain.description.startswith("Twenty numbered videos")
    (model,) = components.models
    assert (model.domain, model.head, model.encoder, model.items) == ("tiny", "tiny-mean", "tiny-hash", 20)
    assert model.data_fingerprint == tiny_dataset().fingerprint() and model.metrics == {"recall@10": 0.5}
    assert model.version and model.created.endswith("Z")


def test_encode_returns_the_encoders_vectors(client):
    result = client.encode(["first text", "second text"])
    expected = TinyEncoder().encode(["first text", "second text"]).tolist()
    assert (result.encoder, result.dim) == ("tiny-hash", 8)
    for got, want in zip(result.vectors, expected):
        assert got == pytest.approx(want, abs=1e-6)


def test_health_is_serving(client):
    assert client.health() == "SERVING"
    assert client.health("temporec.v1.Recommender") == "SERVING"


def test_reflection_lists_and_describes_the_services(grpc_server):
    with grpc.insecure_channel(grpc_server.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert {"temporec.v1.Recommender", "grpc.health.v1.Health"} <= set(services)
        recommend = DescriptorPool(database).FindServiceByName("temporec.v1.Recommender").FindMethodByName("Recommend")
        assert recommend.input_type.fields_by_name["history"].message_type.full_name == "temporec.v1.Event"


# -- errors -------------------------------------------------------------------------


def call_error(call, *args, **kwargs) -> TemporecError:
    with pytest.raises(TemporecError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_unknown_domain_is_not_found_and_lists_the_known_ones(client):
    error = call_error(client.recommend, "books", history=history("v1"))
    assert error.code is Code.NOT_FOUND and "'tiny'" in error.details


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_is_invalid(client, k):
    error = call_error(client.recommend, "tiny", history=history("v1"), k=k)
    assert error.code is Code.INVALID_ARGUMENT and error.details.startswith("k:")


def test_k_past_its_limit_is_resource_exhausted(client):
    error = call_error(client.recommend, "tiny", history=history("v1"), k=10**6)
    assert error.code is Code.RESOURCE_EXHAUSTED and error.details == "k: at most 1000 (limits.max_k), got 1000000"


def test_unknown_item_is_not_found_and_names_the_field(client):
    error = call_error(client.recommend, "tiny", history=history("v1", "nope"))
    assert error.code is Code.NOT_FOUND and "history[1].item_id" in error.details


def test_unknown_action_names_the_allowed_ones(client):
    error = call_error(client.recommend, "tiny", history=[Event("v1", "dance")])
    assert error.code is Code.INVALID_ARGUMENT and "'like', 'view'" in error.details


def test_unknown_encoder_is_not_found(client):
    error = call_error(client.encode, ["text"], encoder="gpt-99")
    assert error.code is Code.NOT_FOUND and "'tiny-hash'" in error.details


def test_a_request_over_the_size_limit_is_refused_by_grpc(client):
    ten_megabytes = ["x" * 1000] * 10_000
    error = call_error(client.recommend, "tiny", history=history("v1"), candidates=ten_megabytes)
    assert error.code is Code.RESOURCE_EXHAUSTED
    assert client.recommend("tiny", history=history("v1"), k=1).items


def test_a_failing_business_rule_is_internal_and_the_server_keeps_serving(client, caplog):
    with caplog.at_level(logging.ERROR):
        error = call_error(client.recommend, "tiny", history=history("v1"), user_id="explode")
    assert error.code is Code.INTERNAL and "tiny rule exploded" in error.details
    assert any(record.exc_info for record in caplog.records)  # the traceback is in the server log
    assert len(client.recommend("tiny", history=history("v1"), k=2).items) == 2


def test_a_failing_encoder_is_internal_and_the_server_keeps_serving(client):
    error = call_error(client.encode, [TINY_FAIL_TEXT])
    assert error.code is Code.INTERNAL and "refuses" in error.details
    assert client.encode(["fine"]).dim == 8


def test_a_passed_deadline_is_deadline_exceeded_and_frees_the_server(client):
    tiny_encoder_gate.clear()
    try:
        error = call_error(client.encode, [TINY_WAIT_TEXT], timeout=0.5)
    finally:
        tiny_encoder_gate.set()
    assert error.code is Code.DEADLINE_EXCEEDED
    assert client.encode(["after the deadline"]).dim == 8


# -- life cycle ---------------------------------------------------------------------


def test_health_turns_not_serving_when_shutdown_begins(start_grpc_server, tiny_registry, tiny_models_dir):
    with start_grpc_server(tiny_registry, tiny_models_dir, grace_seconds=5.0) as running:
        with grpc.insecure_channel(running.target) as channel:
            request = health_pb2.HealthCheckRequest(service="temporec.v1.Recommender")
            updates = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=60)
            assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
            running.stop(wait=False)
            assert next(updates).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_server_with_no_models_serves_and_says_so(start_grpc_server, tiny_registry, tmp_path):
    with start_grpc_server(tiny_registry, tmp_path) as running, TemporecClient(running.target) as client:
        assert client.list_components().models == []
        error = call_error(client.recommend, "tiny", history=history("v1"))
        assert error.code is Code.NOT_FOUND and "no model is loaded" in error.details


def test_configured_limits_apply(start_grpc_server, tiny_registry, tiny_models_dir):
    with start_grpc_server(tiny_registry, tiny_models_dir, limits=Limits(max_k=3)) as running:
        with TemporecClient(running.target) as client:
            assert len(client.recommend("tiny", history=history("v1"), k=3).items) == 3
            error = call_error(client.recommend, "tiny", history=history("v1"), k=4)
            assert error.code is Code.RESOURCE_EXHAUSTED and "at most 3 (limits.max_k)" in error.details


def test_a_port_in_use_is_refused(grpc_server, tiny_registry):
    config = ServerConfig(host="127.0.0.1", port=grpc_server.server.port)

    async def bind():
        TemporecServer(RecommenderService(tiny_registry, None, device="cpu"), config)

    with pytest.raises(FailedPrecondition, match=f"cannot listen on 127.0.0.1:{config.port}"):
        asyncio.run(bind())


def test_temporec_serve_prints_its_address_and_stops_on_sigterm(tmp_path):
    command = [
        sys.executable,
        "-m",
        "temporec",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--models",
        str(tmp_path),
    ]
    env = {**os.environ, "TEMPOREC_PLUGINS": "", "TEMPOREC_CONFIG": ""}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(120, server.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    try:
        line = server.stdout.readline()
        ready = re.fullmatch(r"temporec serving on 127\.0\.0\.1:(\d+) \(0 models\)\n", line)
        assert ready, (
            f"unexpected first line {line!r}; stderr: {server.stderr.read() if server.poll() is not None else ''}"
        )
        with TemporecClient(f"127.0.0.1:{ready[1]}") as client:
            assert client.health() == "SERVING"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_serve_help_is_a_manual(capsys):
    from temporec.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    text = capsys.readouterr().out
    assert exited.value.code == 0
    for words in ("--models", "--port", "TEMPOREC_PORT", "TEMPOREC_MAX_K", "TEMPOREC_CONFIG", "precedence", "Example"):
        assert words in text


# -- status mapping and translation (pure functions) --------------------------------


@pytest.mark.parametrize(
    "exc, code",
    [
        (InvalidArgument("k: bad"), Code.INVALID_ARGUMENT),
        (NotFound("domain: no"), Code.NOT_FOUND),
        (FailedPrecondition("state"), Code.FAILED_PRECONDITION),
        (ResourceExhausted("big"), Code.RESOURCE_EXHAUSTED),
        (Unavailable("later"), Code.UNAVAILABLE),
        (TimeoutError(), Code.DEADLINE_EXCEEDED),
        (PluginError("head 'x' failed"), Code.INTERNAL),
        (KeyError("secret internals"), Code.INTERNAL),
    ],
)
def test_every_exception_maps_to_one_status(exc, code):
    got, details = to_status(exc, "Recommend")
    assert got is code and details


def test_internal_errors_do_not_leak_details():
    _, details = to_status(KeyError("secret internals"), "Recommend")
    assert "secret" not in details and "KeyError" in details


names = st.text(max_size=12)
events = st.builds(
    CoreEvent,
    item_id=names,
    action=names,
    timestamp=st.integers(0, 2**45).map(lambda ms: ms / 1000),
    text=st.text(max_size=30),
)
queries = st.builds(
    Query,
    domain=names,
    history=st.lists(events, max_size=5),
    head=names,
    encoder=names,
    user_id=names,
    candidates=st.lists(names, max_size=5),
    k=st.integers(-(2**31), 2**31 - 1),
    allow_repeats=st.booleans(),
)
recommendations = st.builds(
    Recommendation,
    items=st.lists(st.builds(ScoredItem, item_id=names, score=st.floats(allow_nan=False), text=names), max_size=5),
    domain=names,
    head=names,
    encoder=names,
    model_version=names,
    cold_start=st.booleans(),
    candidate_source=st.sampled_from(["catalog", "request"]),
    rules_applied=st.lists(names, max_size=3),
    timings_ms=st.dictionaries(names, st.floats(0, 1e6), max_size=4),
)


@given(queries)
def test_query_round_trips_through_the_proto(query):
    assert translate.query_from_proto(proto_helpers.query_to_proto(query)) == query


@given(recommendations)
def test_recommendation_round_trips_through_the_proto(recommendation):
    assert proto_helpers.recommendation_from_proto(translate.recommendation_to_proto(recommendation)) == recommendation


def test_timestamps_travel_as_unix_milliseconds():
    proto = proto_helpers.event_to_proto(CoreEvent("v1", "view", 1_700_000_000.25))
    assert proto.timestamp_ms == 1_700_000_000_250
    assert translate.event_from_proto(proto).timestamp == 1_700_000_000.25
