"""Fault isolation: a plugin that raises, returns garbage or hangs fails only the calls that
use it (INTERNAL or DEADLINE_EXCEEDED); every other model keeps answering and the server
stays healthy. One real server serves a good model beside one model per faulty head."""

import threading

import grpc
import pytest
import torch

from conftest import (
    GatedHead,
    HeadOutput,
    TinyEncoder,
    TinyMeanHead,
    build_tiny_artifact,
    tiny_registry_with,
)
from temporec_client import Event, TemporecClient, TemporecError

Code = grpc.StatusCode
T0 = 1_700_000_000.0
CEILING = 1.0  # the server's max_request_seconds in this module


class RaisingHead(TinyMeanHead):
    name = "tiny-raises"

    def forward(self, events, mask):
        raise RuntimeError("raising head is broken")


class NaNHead(TinyMeanHead):
    name = "tiny-nan"

    def forward(self, events, mask):
        return HeadOutput(torch.full_like(events, float("nan")))


class WrongShapeHead(TinyMeanHead):
    name = "tiny-wrong-shape"

    def forward(self, events, mask):
        return HeadOutput(events[..., :3])  # too narrow to score the items


class GarbageHead(TinyMeanHead):
    name = "tiny-garbage"

    def forward(self, events, mask):
        return "not a HeadOutput"


class HangingEncoder(TinyEncoder):
    """TinyEncoder's vectors (its vector space), after waiting for its gate."""

    name = "tiny-hangs"
    gate = threading.Event()

    def encode(self, texts):
        self.gate.wait(timeout=60)
        return super().encode(texts)


FAULTY_HEADS = (RaisingHead, NaNHead, WrongShapeHead, GarbageHead)


@pytest.fixture(scope="module")
def server(start_grpc_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-models")
    for head in (TinyMeanHead, GatedHead, *FAULTY_HEADS):
        build_tiny_artifact(root, head=head)
    # tiny-mean again, for texts embedded by the hanging encoder (its own version: its own directory)
    build_tiny_artifact(root, encoder=HangingEncoder.name, version="1-hangs")
    registry = tiny_registry_with(heads=[GatedHead, *FAULTY_HEADS], encoders=[HangingEncoder])
    GatedHead.gate.set()
    HangingEncoder.gate.set()
    with start_grpc_server(registry, root, max_request_seconds=CEILING) as running:
        yield running
    GatedHead.gate.set()
    HangingEncoder.gate.set()


@pytest.fixture(scope="module")
def client(server):
    with TemporecClient(server.target, timeout=None) as client:  # no deadline unless a test sets one
        yield client


@pytest.fixture
def hung_head():
    """The tiny-gated head hangs until the test ends."""
    GatedHead.gate.clear()
    yield
    GatedHead.gate.set()


@pytest.fixture
def hung_encoder():
    HangingEncoder.gate.clear()
    yield
    HangingEncoder.gate.set()


def history(*item_ids):
    return [Event(item, "view", T0 + 60 * i) for i, item in enumerate(item_ids)]


def error_of(call, *args, **kwargs) -> TemporecError:
    with pytest.raises(TemporecError) as caught:
        call(*args, **kwargs)
    return caught.value


def assert_healthy(client):
    """The good model answers and the server reports SERVING."""
    assert len(client.recommend("tiny", history=history("v1", "v2"), k=3, timeout=30).items) == 3
    assert client.health(timeout=30) == "SERVING"


@pytest.mark.parametrize(
    "head, words",
    [
        ("tiny-raises", "raising head is broken"),
        ("tiny-nan", "non-finite"),
        ("tiny-wrong-shape", "unusable states"),
        ("tiny-garbage", "head 'tiny-garbage' failed"),
    ],
)
def test_a_faulty_head_fails_its_own_calls_with_internal(client, head, words):
    error = error_of(client.recommend, "tiny", history=history("v1", "v2"), head=head, timeout=30)
    assert error.code is Code.INTERNAL and words in error.details
    assert_healthy(client)


def test_calls_batched_with_a_faulty_heads_calls_are_not_affected(client):
    """Each model has its own batches: a faulty head's failure reaches no other model."""
    from concurrent.futures import ThreadPoolExecutor

    def call(head):
        try:
            return client.recommend("tiny", history=history("v3", "v4"), head=head, k=2, timeout=30).head
        except TemporecError as exc:
            return exc.code

    heads = ["tiny-mean", "tiny-raises", "tiny-nan"] * 8
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, heads))
    for head, answer in zip(heads, answers):
        assert answer == ("tiny-mean" if head == "tiny-mean" else Code.INTERNAL)


def test_a_hung_head_ends_its_calls_at_their_deadline_and_others_are_served(client, hung_head):
    for _ in range(2):  # the second call queues behind the hung one on the model's thread
        error = error_of(client.recommend, "tiny", history=history("v1"), head="tiny-gated", timeout=0.5)
        assert error.code is Code.DEADLINE_EXCEEDED
    assert_healthy(client)


def test_without_a_client_deadline_the_server_ceiling_ends_the_call(client, hung_head):
    error = error_of(client.recommend, "tiny", history=history("v1"), head="tiny-gated")
    assert error.code is Code.DEADLINE_EXCEEDED and "deadline" in error.details
    assert_healthy(client)


def test_a_head_that_stops_hanging_serves_again(client, hung_head):
    assert (
        error_of(client.recommend, "tiny", history=history("v1"), head="tiny-gated", timeout=0.5).code
        is Code.DEADLINE_EXCEEDED
    )
    GatedHead.gate.set()
    assert client.recommend("tiny", history=history("v1"), head="tiny-gated", k=2, timeout=30).head == "tiny-gated"


def test_a_hung_encoder_ends_its_calls_and_others_are_served(client, hung_encoder):
    error = error_of(client.encode, ["a new video"], encoder="tiny-hangs", timeout=0.5)
    assert error.code is Code.DEADLINE_EXCEEDED
    error = error_of(client.encode, ["another new video"], encoder="tiny-hangs")  # no client deadline
    assert error.code is Code.DEADLINE_EXCEEDED
    outside = [Event("v1", "view", T0), Event("", "view", T0 + 60, text="a video the catalog lacks")]
    error = error_of(client.recommend, "tiny", history=outside, encoder="tiny-hangs", timeout=0.5)
    assert error.code is Code.DEADLINE_EXCEEDED
    assert client.encode(["the other encoder"], encoder="tiny-hash", timeout=30).dim == 8
    assert client.recommend("tiny", history=outside, encoder="tiny-hash", k=2, timeout=30).encoder == "tiny-hash"
    assert_healthy(client)
