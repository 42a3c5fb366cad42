"""The client against a live server with a real model (video domain, lstm head, local encoder)."""

from __future__ import annotations

import importlib.metadata
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pytest

from temporec_client import Event, TemporecClient, TemporecError, TrackedEvent
from temporec_client.v1 import recommender_pb2

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "recommend.py"


@pytest.fixture(scope="module")
def client(target):
    with TemporecClient(target, timeout=60) as client:
        yield client


def error_of(call, *args, **kwargs) -> TemporecError:
    with pytest.raises(TemporecError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_the_distribution_depends_on_grpc_and_protobuf_alone():
    requirements = {
        req.split(">")[0].split("=")[0].split(";")[0].strip() for req in importlib.metadata.requires("temporec-client")
    }
    assert requirements - {"pytest"} == {"grpcio", "protobuf", "grpcio-health-checking"}


def test_importing_the_client_loads_no_model_stack(tmp_path):
    code = (
        "import sys, temporec_client, temporec_client.v1.recommender_pb2_grpc; "
        "print(sorted({'torch', 'transformers', 'temporec'} & set(sys.modules)))"
    )
    # cwd: away from the source tree, so that the installed package is imported
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "[]"


def test_health_is_serving(client):
    assert client.health() == "SERVING"
    assert client.health("temporec.v1.Recommender") == "SERVING"


def test_components_list_the_real_plugins_and_the_model(client):
    components = client.list_components()
    assert "local" in {c.name for c in components.encoders} and "lstm" in {c.name for c in components.heads}
    video = next(d for d in components.domains if d.name == "video")
    assert video.details["actions"] == "watch,rate"
    (model,) = components.models
    assert (model.domain, model.head, model.encoder, model.items) == ("video", "lstm", "local", 30)
    assert model.metrics and model.version and model.created.endswith("Z")  # recorded at training time


def test_recommend_ranks_unseen_catalog_items(client):
    result = client.recommend("video", history=["1", Event("2", "rate"), Event("3", "watch")], k=5)
    assert len(result.items) == 5 and not {"1", "2", "3"} & set(result.item_ids)
    scores = [item.score for item in result.items]
    assert scores == sorted(scores, reverse=True)
    assert (result.domain, result.head, result.encoder, result.cold_start) == ("video", "lstm", "local", False)
    assert result.candidate_source == "catalog" and "exclude_history" in result.rules_applied
    assert all(item.text for item in result.items) and result.timings_ms


def test_recommend_takes_times_and_items_outside_the_catalog(client):
    history = [
        Event("4", "watch", timestamp=datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)),
        Event("5", "rate", timestamp=1_714_600_000.0),
        Event("new-upload", "watch", timestamp=1_714_700_000.0, text="A documentary about the sea"),
    ]
    result = client.recommend("video", history=history, k=3, user_id="u1")
    assert len(result.items) == 3 and "new-upload" not in result.item_ids


def test_candidates_restrict_the_answer(client):
    result = client.recommend("video", history=["1"], candidates=["7", "8", "9"], k=10)
    assert sorted(result.item_ids) == ["7", "8", "9"] and result.candidate_source == "request"


def test_an_empty_history_gets_the_popular_items(client):
    result = client.recommend("video", k=4)
    assert result.cold_start and result.head == "popularity" and len(result.items) == 4


def test_encode_returns_unit_vectors(client):
    embeddings = client.encode(["a film about robots", "a film about dragons"])
    assert embeddings.encoder == "local" and embeddings.dim == 384 and len(embeddings.vectors) == 2
    for vector in embeddings.vectors:
        assert len(vector) == 384 and math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-4)


def test_an_unknown_domain_is_not_found_and_names_the_known_ones(client):
    error = error_of(client.recommend, "books", history=["1"])
    assert error.code is grpc.StatusCode.NOT_FOUND and "'video'" in error.details


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"k": 0}, "k"), ({"history": [Event("1", "like")]}, "action")],
    ids=["k", "action"],
)
def test_bad_fields_are_invalid_arguments_naming_the_field(client, kwargs, field):
    error = error_of(client.recommend, "video", **{"history": ["1"], **kwargs})
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT and field in error.details


def test_a_passed_deadline_is_deadline_exceeded(client):
    # A deadline already in the past (a tiny positive one may still be met on loopback).
    error = error_of(client.recommend, "video", history=["1"], timeout=-1)
    assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_metadata_is_sent_with_every_call(target):
    with TemporecClient(target, metadata=[("authorization", "Bearer test-token")]) as client:
        assert client.health() == "SERVING"
        assert client.recommend("video", history=["1"], k=1).items


def test_tls_to_a_plaintext_server_fails_as_unavailable(target):
    with TemporecClient(target, secure=True, timeout=10) as client:
        assert error_of(client.health).code is grpc.StatusCode.UNAVAILABLE


def test_raw_stubs_are_available_for_advanced_use(target):
    with grpc.insecure_channel(target) as channel:
        from temporec_client.v1 import recommender_pb2_grpc

        stub = recommender_pb2_grpc.RecommenderStub(channel)
        request = recommender_pb2.RecommendRequest(domain="video", history=[recommender_pb2.Event(item_id="1")], k=2)
        assert len(stub.Recommend(request, timeout=60).items) == 2


def test_the_example_prints_recommendations(target):
    command = [sys.executable, str(EXAMPLE), "--target", target, "--domain", "video", "-k", "3", "1", "2:rate"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "server health: SERVING" in done.stdout and "top 3 for video from lstm on local" in done.stdout


def test_track_then_recommend_by_user_id_from_the_stored_history(client):
    user = f"python-{os.getpid()}-{time.time_ns()}"
    events = [TrackedEvent(user, f"e{n}", item, "watch", 1_704_067_200 + 60 * n) for n, item in enumerate("492")]
    assert client.track([events[2], events[0]]).stored == 2  # late: the second arrives last
    retried = client.track_stream([[events[1]], events])
    assert (retried.stored, retried.duplicates) == (1, 3)
    assert [(e.event_id, e.item_id) for e in client.get_history(user)] == [(e.event_id, e.item_id) for e in events]
    by_user = client.recommend("video", user_id=user, k=5)
    sent = client.recommend("video", history=[Event(e.item_id, e.action, e.timestamp) for e in events], k=5)
    assert by_user.history_source == "store" and by_user.item_ids == sent.item_ids
    assert [i.score for i in by_user.items] == pytest.approx([i.score for i in sent.items], rel=1e-5, abs=1e-6)
    assert client.forget_user(user) == 3 and client.get_history(user) == []
