"""Load limits, deadlines and request ids, against real servers.

A gated encoder (the tiny encoder under another name, same vector space) holds every
text "hold" until the test opens its gate, so calls can be kept in flight on purpose.
"""

import io
import json
import logging
import re
import threading

import grpc
import pytest

from conftest import TinyDomain, TinyEncoder, TinyMeanHead
from temporec import hookimpl
from temporec.contract.registry import load_registry
from temporec.grpc.interceptors import (
    JsonFormatter,
    configure_logging,
    current_request_id,
    valid_request_id,
)
from temporec.serving.config import ConfigError, load_config
from temporec.v1 import recommender_pb2 as pb
from temporec.v1 import recommender_pb2_grpc
from temporec_client import Event, TemporecClient, TemporecError

Code = grpc.StatusCode
T0 = 1_700_000_000.0
HOLD = "hold"
RECOMMEND = "/temporec.v1.Recommender/Recommend"


class GatedEncoder(TinyEncoder):
    """Tiny vectors; a batch with the text "hold" waits for ``gate``."""

    name = "gated"
    gate = threading.Event()
    entered = threading.Semaphore(0)  # released once per held batch

    def encode(self, texts):
        if HOLD in texts:
            self.entered.release()
            self.gate.wait(timeout=30)
        return super().encode(texts)


class GatedPlugin:
    @hookimpl
    def register_encoders(self, register):
        register(TinyEncoder)
        register(GatedEncoder)

    @hookimpl
    def register_heads(self, register):
        register(TinyMeanHead)

    @hookimpl
    def register_domains(self, register):
        register(TinyDomain)


@pytest.fixture(scope="module")
def gated_registry():
    return load_registry(extra_plugins={"gated": GatedPlugin()}, env={"TEMPOREC_PLUGINS": ""})


@pytest.fixture
def gate():
    """A closed gate for the test; opened afterwards so that no thread stays held."""
    GatedEncoder.gate.clear()
    GatedEncoder.entered = threading.Semaphore(0)
    yield GatedEncoder
    GatedEncoder.gate.set()


def start_gated(start_grpc_server, registry, models_dir, limit):
    # The model was trained with tiny-hash; texts outside its catalog go through "gated".
    settings = {"max_concurrent_rpcs": limit, "default_encoder": "gated", "encoder_substitutes": {"tiny-hash": "gated"}}
    return start_grpc_server(registry, models_dir, **settings)


def history(*item_ids):
    return [Event(item, "view", T0 + 60 * i) for i, item in enumerate(item_ids)]


def call_error(call, *args, **kwargs) -> TemporecError:
    with pytest.raises(TemporecError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- concurrent calls -------------------------------------------------------------------


def test_calls_past_the_limit_are_refused_at_once_while_others_run(
    start_grpc_server, gated_registry, tiny_models_dir, gate
):
    with (
        start_gated(start_grpc_server, gated_registry, tiny_models_dir, limit=2) as running,
        grpc.insecure_channel(running.target) as channel,
        TemporecClient(running.target) as client,
    ):
        stub = recommender_pb2_grpc.RecommenderStub(channel)
        held = [stub.Encode.future(pb.EncodeRequest(texts=[HOLD]), timeout=60) for _ in range(2)]
        for _ in held:
            assert gate.entered.acquire(timeout=30), "a held call never reached the encoder"

        error = call_error(client.recommend, "tiny", history=history("v1"))
        assert error.code is Code.RESOURCE_EXHAUSTED
        assert "max_concurrent_rpcs" in error.details and "2 calls" in error.details
        assert client.health() == "SERVING"  # probes are not counted

        gate.gate.set()
        assert [call.result().dim for call in held] == [8, 8]
        assert client.recommend("tiny", history=history("v1"), k=2).items  # the slots are free again


def test_a_call_past_its_deadline_stops_and_frees_its_slot(start_grpc_server, gated_registry, tiny_models_dir, gate):
    with (
        start_gated(start_grpc_server, gated_registry, tiny_models_dir, limit=1) as running,
        TemporecClient(running.target) as client,
    ):
        events = [Event("v1", "view", T0), Event("new", "view", T0 + 60, text=HOLD)]
        error = call_error(client.recommend, "tiny", history=events, timeout=0.5)
        assert error.code is Code.DEADLINE_EXCEEDED
        assert gate.entered.acquire(timeout=30)  # the encoder was reached (and is still held)
        # The one slot is free although the encoder's thread still waits at the gate.
        assert client.recommend("tiny", history=history("v1"), k=2).items
        gate.gate.set()  # let the thread go before the server stops: shutdown joins it


# -- request ids and the access log -----------------------------------------------------


@pytest.fixture(scope="module")
def stub(grpc_server):
    with grpc.insecure_channel(grpc_server.target) as channel:
        yield recommender_pb2_grpc.RecommenderStub(channel)


REQUEST = pb.RecommendRequest(domain="tiny", history=[pb.Event(item_id="v1", action="view")], k=2)


def echoed_id(metadata) -> str:
    (value,) = [value for key, value in metadata if key == "x-request-id"]
    return value


def test_the_clients_request_id_comes_back(stub):
    _, call = stub.Recommend.with_call(REQUEST, metadata=[("x-request-id", "req-42.a_b")], timeout=30)
    assert echoed_id(call.initial_metadata()) == "req-42.a_b"


def test_a_failed_call_returns_the_request_id_too(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Recommend(pb.RecommendRequest(domain="books", k=1), metadata=[("x-request-id", "req-43")], timeout=30)
    assert caught.value.code() is Code.NOT_FOUND and echoed_id(caught.value.initial_metadata()) == "req-43"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129])
def test_a_missing_or_invalid_request_id_is_replaced_by_a_new_one(stub, sent):
    metadata = [("x-request-id", sent)] if sent is not None else []
    made = []
    for _ in range(2):
        _, call = stub.Recommend.with_call(REQUEST, metadata=metadata, timeout=30)
        made.append(echoed_id(call.initial_metadata()))
    assert all(re.fullmatch("[0-9a-f]{32}", made_id) for made_id in made) and made[0] != made[1]


def test_request_ids_allow_visible_ascii_up_to_128_characters():
    assert valid_request_id("x" * 128) and valid_request_id("a-b_c.d:e/f=")
    assert not valid_request_id("x" * 129) and not valid_request_id("é") and not valid_request_id("")


def test_every_log_record_of_a_call_carries_its_request_id(stub, caplog, access_log):
    explode = pb.RecommendRequest(domain="tiny", user_id="explode", history=REQUEST.history, k=1)
    with caplog.at_level(logging.INFO):
        with pytest.raises(grpc.RpcError):
            stub.Recommend(explode, metadata=[("x-request-id", "trace-7")], timeout=30)
        access = access_log.record("trace-7")
    plugin_failure = next(r for r in caplog.records if r.getMessage().startswith("plugin failure in"))
    assert plugin_failure.request_id == "trace-7" and plugin_failure.exc_info
    assert access.access == {
        "method": RECOMMEND,
        "code": "INTERNAL",
        "duration_ms": access.access["duration_ms"],
        "domain": "tiny",
    }


def test_the_access_log_names_method_status_duration_and_components(stub, caplog, access_log):
    request = pb.RecommendRequest(domain="tiny", user_id="someone-7", history=[pb.Event(item_id="v13")], k=2)
    with caplog.at_level(logging.INFO):
        stub.Recommend(request, metadata=[("x-request-id", "trace-8")], timeout=30)
        access = access_log.record("trace-8")
    assert access.access["code"] == "OK" and access.access["duration_ms"] >= 0
    assert (access.access["domain"], access.access["head"], access.access["encoder"]) == (
        "tiny",
        "tiny-mean",
        "tiny-hash",
    )
    assert access.getMessage().startswith(f"{RECOMMEND} OK ") and "head=tiny-mean" in access.getMessage()
    entry = json.loads(JsonFormatter().format(access))
    assert entry["request_id"] == "trace-8" and entry["code"] == "OK" and entry["logger"] == "temporec.access"
    assert "someone-7" not in caplog.text and "v13" not in caplog.text + json.dumps(entry)


def test_health_checks_are_logged_at_debug_only(grpc_server, caplog):
    with caplog.at_level(logging.INFO), TemporecClient(grpc_server.target) as client:
        client.health()
    assert not [r for r in caplog.records if r.name == "temporec.access"]


def test_an_undecodable_request_is_an_invalid_argument(grpc_server):
    with grpc.insecure_channel(grpc_server.target) as channel:
        raw = channel.unary_unary(RECOMMEND)  # no serializer: bytes as they are
        for payload in (b"\xff\xff\xff", b"\x0a\x02\xff\xfe"):  # corrupt; a domain of invalid UTF-8
            with pytest.raises(grpc.RpcError) as caught:
                raw(payload, timeout=30)
            assert caught.value.code() is Code.INVALID_ARGUMENT
            assert caught.value.details().startswith("Recommend: the request message does not decode")


# -- logging set-up and configuration ---------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configured_logs_carry_the_request_id(log_format):
    logger, stream = logging.getLogger(f"test_limits.{log_format}"), io.StringIO()
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(stream))
    configure_logging(log_format, logger)
    token = current_request_id.set("abc-123")
    try:
        logger.warning("inside a call")
    finally:
        current_request_id.reset(token)
    logger.warning("outside")
    first, second = stream.getvalue().splitlines()
    if log_format == "json":
        assert json.loads(first)["request_id"] == "abc-123" and json.loads(second)["request_id"] == "-"
        assert json.loads(first)["message"] == "inside a call" and json.loads(first)["level"] == "WARNING"
    else:
        assert "[abc-123]: inside a call" in first and "[-]: outside" in second


def test_limits_come_from_file_environment_and_flags(tmp_path):
    path = tmp_path / "temporec.toml"
    path.write_text('max_concurrent_rpcs = 8\nlog_format = "JSON"\n')
    config = load_config(path, env={})
    assert (config.max_concurrent_rpcs, config.log_format) == (8, "json")
    assert load_config(path, env={"TEMPOREC_MAX_CONCURRENT_RPCS": "3"}).max_concurrent_rpcs == 3
    assert load_config(env={}).max_concurrent_rpcs == 64


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TEMPOREC_MAX_CONCURRENT_RPCS": "0"}, "max_concurrent_rpcs: must be positive"),
        ({"TEMPOREC_LOG_FORMAT": "xml"}, "log_format: 'xml' is not allowed; allowed: 'json', 'text'"),
    ],
)
def test_bad_limits_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_serve_flags_reach_the_configuration():
    from temporec.cli import build_parser
    from temporec.cli.serve import config_from_args

    args = build_parser().parse_args(
        ["serve", "--max-concurrent-rpcs", "5", "--log-format", "json", "--tokens-file", "t"]
    )
    config = config_from_args(args, env={})
    assert (config.max_concurrent_rpcs, config.log_format, config.tokens_file) == (5, "json", "t")
