"""Prometheus metrics, scraped over HTTP from a real server: requests by method, domain,
head and code, per-stage latency, loaded models, reloads, and the Triton call timer."""

import asyncio
import time

import grpc
import pytest
from grpc._cython import cygrpc
from tritonclient.utils import InferenceServerException

from conftest import TINY_WAIT_TEXT, build_tiny_artifact, scrape, tiny_encoder_gate
from temporec.contract.errors import FailedPrecondition
from temporec.grpc import TemporecServer
from temporec.grpc.interceptors import ending_code
from temporec.serving.config import ServerConfig
from temporec.serving.service import RecommenderService
from temporec.triton import time_triton_request
from temporec.triton.local_server import free_port
from temporec.v1 import admin_pb2, admin_pb2_grpc
from temporec_client import Event, TemporecClient, TemporecError

T0 = 1_700_000_000.0
ADMIN_TOKEN = "metrics-test-admin"


def scrape_until(port: int, condition) -> dict:
    """Scrape until ``condition(samples)`` holds: a call that ends by the client's deadline
    is recorded when the server gives up on it, a moment after the client did."""
    for _ in range(200):
        samples = scrape(port)
        if condition(samples):
            return samples
        time.sleep(0.05)
    pytest.fail("the metrics never showed the expected samples")


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples, method="Recommend", domain="tiny", head="tiny-mean", code="OK") -> float:
    return value(samples, "temporec_requests_total", method=method, domain=domain, head=head, code=code)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics-models")
    build_tiny_artifact(root, version="1")
    return root


@pytest.fixture(scope="module")
def server(start_grpc_server, tiny_registry, models):
    with start_grpc_server(tiny_registry, models, metrics_port=free_port(), admin_tokens=ADMIN_TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with TemporecClient(server.target, timeout=30) as client:
        yield client


def history(*items):
    return [Event(item, "view", T0 + 60 * i) for i, item in enumerate(items)]


def failure(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(TemporecError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def test_requests_are_counted_by_method_domain_head_and_code(server, client):
    port = server.server.metrics_port
    before = scrape(port)
    for _ in range(3):
        client.recommend("tiny", history=history("v1", "v2"), k=2)
    client.recommend("tiny", history=[], k=2)  # a cold start: answered by popularity
    assert failure(client.recommend, "tiny", history=history("v1"), k=0) is grpc.StatusCode.INVALID_ARGUMENT
    assert failure(client.recommend, "tiny", history=history("v1"), user_id="explode") is grpc.StatusCode.INTERNAL
    assert failure(client.recommend, "books", history=history("v1")) is grpc.StatusCode.NOT_FOUND
    assert failure(client.recommend, "tiny", history=history("v1"), head="gpt-head") is grpc.StatusCode.NOT_FOUND
    client.encode(["some text"])
    tiny_encoder_gate.clear()
    try:
        assert failure(client.encode, [TINY_WAIT_TEXT], timeout=0.3) is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        tiny_encoder_gate.set()

    delta = lambda **labels: requests(after, **labels) - requests(before, **labels)  # noqa: E731
    # The server sees the client give up at its deadline, or its own copy of the deadline
    # pass, whichever comes first: CANCELLED or DEADLINE_EXCEEDED.
    ended = lambda samples: sum(
        requests(samples, method="Encode", domain="", head="", code=code)  # noqa: E731
        for code in ("DEADLINE_EXCEEDED", "CANCELLED")
    )
    after = scrape_until(port, lambda samples: ended(samples) > ended(before))
    assert delta() == 3
    assert delta(head="popularity") == 1
    assert delta(code="INVALID_ARGUMENT", head="") == 1
    assert delta(code="INTERNAL", head="") == 1
    # names the server does not know are counted as "other": no client can grow the label sets
    assert delta(code="NOT_FOUND", domain="other", head="") == 1
    assert delta(code="NOT_FOUND", head="other") == 1
    assert delta(method="Encode", domain="", head="") == 1
    assert ended(after) - ended(before) == 1
    latency = "temporec_request_seconds_count"
    assert value(after, latency, method="Recommend") - value(before, latency, method="Recommend") == 8


class EndedCall:
    """The state of a finished call that ``ending_code`` reads, as grpc.aio's servicer
    context reports it (a stand-in: a real call cannot be stopped at each of these points)."""

    def __init__(self, code=None, remaining=None, cancelled=False):
        self._code, self._remaining, self._cancelled = code, remaining, cancelled

    def code(self):
        return self._code

    def time_remaining(self):
        return self._remaining

    def cancelled(self):
        return self._cancelled


@pytest.mark.parametrize(
    "call, error, expected",
    [
        (EndedCall(), None, grpc.StatusCode.OK),
        (EndedCall(code=grpc.StatusCode.NOT_FOUND), grpc.aio.AbortError(), grpc.StatusCode.NOT_FOUND),
        (EndedCall(remaining=0.0), asyncio.CancelledError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (EndedCall(remaining=5.0, cancelled=True), asyncio.CancelledError(), grpc.StatusCode.CANCELLED),
        # the servicer answered after the deadline and gRPC could not send its status
        (EndedCall(remaining=0.0), cygrpc.ExecuteBatchError("send status"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (EndedCall(remaining=5.0, cancelled=True), cygrpc.ExecuteBatchError("send status"), grpc.StatusCode.CANCELLED),
        (EndedCall(remaining=5.0), RuntimeError("a bug"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_a_call_is_counted_with_the_status_its_client_saw(call, error, expected):
    assert ending_code(call, error) is expected


def test_stage_latencies_are_histograms_per_domain_and_head(server, client):
    port = server.server.metrics_port
    before = scrape(port)
    client.recommend("tiny", history=history("v1", "v2"), k=2)
    client.recommend("tiny", history=history("v3"), k=2)
    after = scrape(port)
    for stage in ("encode", "rules", "head", "score"):
        count = lambda samples, stage=stage: value(
            samples, "temporec_stage_seconds_count", stage=stage, domain="tiny", head="tiny-mean"
        )  # noqa: E731
        assert count(after) - count(before) == 2
        total = value(after, "temporec_stage_seconds_sum", stage=stage, domain="tiny", head="tiny-mean")
        assert total >= 0
    everything = value(after, "temporec_stage_seconds_bucket", stage="head", domain="tiny", head="tiny-mean", le="+Inf")
    assert everything == value(after, "temporec_stage_seconds_count", stage="head", domain="tiny", head="tiny-mean")


def test_models_loaded_and_reloads(server, models):
    port = server.server.metrics_port
    assert value(scrape(port), "temporec_models_loaded") == 1
    metadata = [("authorization", f"Bearer {ADMIN_TOKEN}")]
    with grpc.insecure_channel(server.target) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        build_tiny_artifact(models, version="2")
        assert admin.ReloadModels(admin_pb2.ReloadModelsRequest(), metadata=metadata, timeout=60).reloaded
        (build_tiny_artifact(models, version="3") / "model.safetensors").write_bytes(b"truncated")
        assert not admin.ReloadModels(admin_pb2.ReloadModelsRequest(), metadata=metadata, timeout=60).reloaded
    samples = scrape(port)
    assert value(samples, "temporec_reloads_total", result="ok") == 1
    assert value(samples, "temporec_reloads_total", result="failed") == 1
    assert value(samples, "temporec_models_loaded") == 1
    assert requests(samples, method="ReloadModels", domain="", head="") == 2


def test_each_server_has_its_own_registry(server, client, start_grpc_server, tiny_registry, models):
    client.recommend("tiny", history=history("v1"), k=1)
    with start_grpc_server(tiny_registry, models, metrics_port=free_port()) as other:
        assert requests(scrape(other.server.metrics_port)) == 0
        assert requests(scrape(server.server.metrics_port)) >= 1


def test_triton_calls_are_timed_with_their_status_code():
    async def calls():
        with time_triton_request("enc"):
            await asyncio.sleep(0)
        with pytest.raises(InferenceServerException):
            with time_triton_request("enc"):
                raise InferenceServerException("model not ready", status="StatusCode.UNAVAILABLE")
        with pytest.raises(asyncio.CancelledError):
            with time_triton_request("enc"):
                raise asyncio.CancelledError

    from temporec.serving.metrics import PROCESS_REGISTRY

    count = lambda code: (
        PROCESS_REGISTRY.get_sample_value("temporec_triton_request_seconds_count", {"model": "enc", "code": code}) or 0
    )  # noqa: E731
    before = {code: count(code) for code in ("OK", "UNAVAILABLE", "CANCELLED")}
    asyncio.run(calls())
    assert {code: count(code) - before[code] for code in before} == {"OK": 1, "UNAVAILABLE": 1, "CANCELLED": 1}


def test_every_server_exposes_the_triton_histogram(server):
    with time_triton_request("exposed"):
        pass
    samples = scrape(server.server.metrics_port)
    assert value(samples, "temporec_triton_request_seconds_count", model="exposed", code="OK") >= 1
    assert value(samples, "process_resident_memory_bytes") > 0  # and the process's own metrics


def test_a_taken_metrics_port_is_refused_naming_the_setting(server, tiny_registry):
    config = ServerConfig(host="127.0.0.1", port=0, metrics_port=server.server.metrics_port)

    async def start():
        instance = TemporecServer(RecommenderService(tiny_registry, None, device="cpu"), config)
        try:
            await instance.start()
        finally:
            await instance.stop(0)

    with pytest.raises(
        FailedPrecondition, match=f"metrics_port: cannot serve metrics on 127.0.0.1:{config.metrics_port}"
    ):
        asyncio.run(start())
