"""Graceful shutdown: once draining starts, new calls are refused with UNAVAILABLE (so
clients retry elsewhere) while the calls in flight finish within ``grace_seconds``; a call
still running when the grace period ends is cancelled and the server stops anyway."""

import threading

import grpc
import pytest

from conftest import GatedHead, build_tiny_artifact, tiny_registry_with
from temporec_client import TemporecClient, TemporecError

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("drain-models")
    build_tiny_artifact(root)
    build_tiny_artifact(root, head=GatedHead)
    return root


@pytest.fixture(scope="module")
def registry():
    return tiny_registry_with(heads=[GatedHead])


@pytest.fixture(autouse=True)
def gate_opened_at_the_end():
    GatedHead.gate.clear()
    GatedHead.entered.clear()
    yield
    GatedHead.gate.set()


class CallInFlight:
    """A Recommend call to the gated head, from its own thread, held at the head."""

    def __init__(self, client: TemporecClient):
        self.outcome = None
        self._thread = threading.Thread(target=self._call, args=(client,))
        self._thread.start()
        assert GatedHead.entered.wait(30), "the call never reached the head"

    def _call(self, client):
        try:
            self.outcome = client.recommend("tiny", history=["v1", "v2"], head="tiny-gated", k=2).head
        except TemporecError as exc:
            self.outcome = exc.code

    def result(self):
        self._thread.join(60)
        return self.outcome


def first_refusal(client: TemporecClient) -> TemporecError:
    """Call the healthy model until a call is refused (the server drains from its own
    thread, a moment after it is told to); until then calls are served."""
    for _ in range(500):
        try:
            client.recommend("tiny", history=["v1"], head="tiny-mean", k=1)
        except TemporecError as exc:
            return exc
        threading.Event().wait(0.01)
    pytest.fail("no call was refused after the server began to drain")


def test_a_call_in_flight_finishes_and_new_calls_are_unavailable(start_grpc_server, registry, models):
    with start_grpc_server(registry, models, grace_seconds=30.0) as running:
        with TemporecClient(running.target, timeout=60) as client:
            in_flight = CallInFlight(client)
            running.stop(wait=False)
            refused = first_refusal(client)
            assert refused.code is Code.UNAVAILABLE and "shutting down" in refused.details
            assert client.health() == "NOT_SERVING"  # health stays open while draining
            with TemporecClient(running.target, timeout=60) as newcomer:  # a new connection too
                assert first_refusal(newcomer).code is Code.UNAVAILABLE
            GatedHead.gate.set()
            assert in_flight.result() == "tiny-gated"  # answered, within the grace period
        running.stop()  # returns once stopped


def test_a_call_still_running_after_the_grace_period_is_cancelled(start_grpc_server, registry, models):
    with start_grpc_server(registry, models, grace_seconds=0.5) as running:
        with TemporecClient(running.target, timeout=60) as client:
            in_flight = CallInFlight(client)
            running.stop()  # returns although the head still hangs
            assert in_flight.result() is Code.UNAVAILABLE
