"""Arbitrary and adversarial requests against a live server: every call ends with a
defined status, never UNKNOWN or INTERNAL, and the server keeps serving.

The server has small limits so that the examples reach past every one of them. The tiny
fixtures' deliberate failures (the text "FAIL", the blocking text "WAIT", the user
"explode") are left out: they exist to test INTERNAL and deadlines.
"""

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import TINY_FAIL_TEXT, TINY_ITEMS, TINY_WAIT_TEXT
from temporec.contract.types import Limits
from temporec.v1 import recommender_pb2 as pb
from temporec.v1 import recommender_pb2_grpc
from temporec_client import TemporecClient

Code = grpc.StatusCode
DEFINED = {Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.RESOURCE_EXHAUSTED}
LIMITS = Limits(
    max_history=16,
    max_candidates=64,
    max_k=50,
    max_text_chars=300,
    max_encode_texts=8,
    max_item_id_chars=32,
    max_explain_events=8,
)
MAX_MESSAGE_BYTES = 64 * 1024
CALL_TIMEOUT = 30  # seconds; a call that hangs fails the test as DEADLINE_EXCEEDED
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RESERVED = {TINY_FAIL_TEXT, TINY_WAIT_TEXT, "explode"}


def mostly(valid, adversarial, one_in: int = 5):
    """``valid`` most of the time, ``adversarial`` one time in ``one_in``: requests that
    are wrong everywhere at once stop at the first check and reach nothing deeper."""
    return st.integers(1, one_in).flatmap(lambda n: adversarial if n == 1 else valid)


def text_but_reserved(**kwargs):
    return st.text(**kwargs).filter(lambda text: text not in RESERVED)


# Strings at and just past each limit, and some large next to the message size limit.
edges = st.sampled_from(["x" * 32, "x" * 33, "é" * 32, "y" * 300, "y" * 301, "z" * 5000, "\u0000", "\U0001f600" * 40])
anything = st.one_of(text_but_reserved(max_size=40), edges)
# Per item rarely adversarial: a history or candidate list holds many of them.
item_ids = mostly(st.sampled_from([f"v{i}" for i in range(TINY_ITEMS)]), st.one_of(st.just(""), anything), one_in=25)
events = st.builds(
    pb.Event,
    item_id=item_ids,
    action=mostly(st.sampled_from(["", "view", "like"]), st.one_of(st.just("dance"), anything), one_in=25),
    timestamp_ms=mostly(st.integers(0, 2**41), st.integers(-(2**63), 2**63 - 1), one_in=25),
    text=mostly(st.one_of(st.just(""), text_but_reserved(max_size=40)), edges, one_in=25),
)


@st.composite
def histories(draw):
    """Events, oldest first except now and then."""
    history = draw(st.lists(events, max_size=LIMITS.max_history + 4))
    if draw(mostly(st.just(True), st.just(False))):
        history.sort(key=lambda event: event.timestamp_ms)
    return history


domain_options = st.one_of(  # none of them is the tiny domain's: INVALID_ARGUMENT when sent
    st.builds(
        pb.RetailOptions,
        categories=st.lists(anything, max_size=3),
        exclude_item_ids=st.lists(item_ids, max_size=3),
        out_of_stock=st.lists(item_ids, max_size=3),
        remind_cart=st.booleans(),
    ),
    st.builds(pb.NewsOptions, max_age_days=st.floats()),
    st.builds(
        pb.CustomerServiceOptions, handoff_threshold=st.floats(), exclude_item_ids=st.lists(item_ids, max_size=3)
    ),
)
OPTION_FIELDS = {
    "RetailOptions": "retail_options",
    "NewsOptions": "news_options",
    "CustomerServiceOptions": "customer_service_options",
}


@st.composite
def requests(draw):
    request = pb.RecommendRequest(
        domain=draw(mostly(st.just("tiny"), anything, one_in=8)),
        head=draw(mostly(st.sampled_from(["", "tiny-mean"]), st.one_of(st.just("lstm"), anything), one_in=8)),
        encoder=draw(mostly(st.sampled_from(["", "tiny-hash"]), st.one_of(st.just("local"), anything), one_in=8)),
        user_id=draw(anything),
        history=draw(histories()),
        candidate_item_ids=draw(mostly(st.just([]), st.lists(item_ids, max_size=LIMITS.max_candidates + 16))),
        k=draw(mostly(st.integers(1, LIMITS.max_k), st.one_of(st.integers(-2, 0), st.integers(-(2**31), 2**31 - 1)))),
        allow_repeats=draw(st.booleans()),
        explain=draw(st.booleans()),
        explain_events=draw(
            mostly(st.integers(0, LIMITS.max_explain_events), st.integers(-(2**31), 2**31 - 1), one_in=8)
        ),
        plugin_options=draw(mostly(st.just({}), st.dictionaries(anything, anything, max_size=3), one_in=8)),
    )
    options = draw(mostly(st.none(), domain_options, one_in=8))
    if options is not None:
        getattr(request, OPTION_FIELDS[type(options).__name__]).CopyFrom(options)
    return request


@pytest.fixture(scope="module")
def fuzz_server(start_grpc_server, tiny_registry, tiny_models_dir):
    with start_grpc_server(
        tiny_registry, tiny_models_dir, limits=LIMITS, max_message_bytes=MAX_MESSAGE_BYTES
    ) as running:
        yield running


@pytest.fixture(scope="module")
def channel(fuzz_server):
    with grpc.insecure_channel(fuzz_server.target) as channel:
        yield channel


def status_of(call, request) -> grpc.StatusCode:
    """The call's status; also counted (pytest --hypothesis-show-statistics shows the mix)."""
    try:
        call(request, timeout=CALL_TIMEOUT)
        code = Code.OK
    except grpc.RpcError as exc:
        code = exc.code()
    event(code.name)
    return code


@FUZZ
@given(request=requests())
def test_any_recommend_request_ends_with_a_defined_status(channel, request):
    code = status_of(recommender_pb2_grpc.RecommenderStub(channel).Recommend, request)
    assert code in DEFINED, f"{code} for {request}"


@FUZZ
@given(payload=st.binary(max_size=300))
def test_any_bytes_end_with_a_defined_status(channel, payload):
    raw = channel.unary_unary("/temporec.v1.Recommender/Recommend")  # the bytes go out as they are
    code = status_of(raw, payload)
    assert code in DEFINED, f"{code} for {payload!r}"


def test_the_server_still_serves_after_the_fuzzing(fuzz_server):
    # Runs after the fuzz tests (file order): the same server, still healthy and answering.
    with TemporecClient(fuzz_server.target) as client:
        assert client.health() == "SERVING"
        assert len(client.recommend("tiny", history=["v1", "v2"], k=3).items) == 3
