"""A/B experiments through the API (docs/realtime.md): real gRPC servers on loopback serving
the tiny model, with an experiment of two arms."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from conftest import build_tiny_artifact
from temporec.contract.stores import Exposure, StoreSettings
from temporec.serving import build_service
from temporec.serving.config import ConfigError, ServerConfig
from temporec.serving.experiment_report import report
from temporec.serving.experiments import Arm, Experiment
from temporec_client import Event, TemporecClient, TemporecError, TrackedEvent

VERSION = "tiny-experiment-v1"
HISTORY = [Event("v3", "view", 1_700_000_000.0), Event("v7", "view", 1_700_000_060.0)]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment-models")
    build_tiny_artifact(root, version=VERSION)
    return root


def two_arms(control_share: float = 0.5, pinned: str = VERSION) -> dict[str, Experiment]:
    arms = (Arm("control", control_share, control=True), Arm("pinned", 1 - control_share, model_version=pinned))
    return {"pin": Experiment("pin", "tiny", arms, salt="test-salt", outcome_actions=("like",))}


def arms_of(client: TemporecClient, users: list[str]) -> list[str]:
    return [client.recommend("tiny", history=HISTORY, user_id=user, k=3).arm for user in users]


@pytest.fixture(scope="module")
def registry(store_registry):
    return store_registry


@pytest.fixture
def serve(start_grpc_server, registry, models_dir, tmp_path):
    """``serve(experiments, **settings)``: a server with the experiments and a store (SQLite unless
    ``store`` is given)."""
    store = f"sqlite://{tmp_path}/history.db"
    return lambda experiments, **fields: start_grpc_server(
        registry, models_dir, experiments=experiments, **{"store": store, **fields}
    )


def open_store(registry, url: str):
    return registry.stores[url.partition(":")[0]](url, StoreSettings())


def exposures_in(registry, url: str, experiment: str = "pin") -> list[Exposure]:
    """The experiment's exposures, read from the server's store beside it."""
    opened = open_store(registry, url)
    try:
        return opened.exposures(experiment)
    finally:
        opened.close()


def test_the_response_names_the_experiment_and_a_sticky_arm(serve):
    users = [f"user-{n}" for n in range(40)]
    with serve(two_arms()) as server:
        with TemporecClient(server.target) as client:
            answer = client.recommend("tiny", history=HISTORY, user_id="user-1", k=3)
            assert answer.experiment == "pin" and answer.arm in ("control", "pinned")
            assert answer.model_version == VERSION and answer.items
            first = arms_of(client, users)
            assert first == arms_of(client, users)
            assert set(first) == {"control", "pinned"}
            anonymous = client.recommend("tiny", history=HISTORY, k=3)
            assert (anonymous.experiment, anonymous.arm) == ("", "")
    with serve(two_arms()) as server:  # restarted
        with TemporecClient(server.target) as client:
            assert arms_of(client, users) == first


def test_an_arm_naming_a_version_that_is_not_loaded_fails_its_users_only(serve):
    with serve(two_arms(0.0, "v-missing")) as server:
        with TemporecClient(server.target) as client:
            with pytest.raises(TemporecError) as raised:
                client.recommend("tiny", history=HISTORY, user_id="someone", k=3)
            assert raised.value.code is grpc.StatusCode.NOT_FOUND
            assert "version 'v-missing'" in raised.value.details
            assert client.recommend("tiny", history=HISTORY, k=3).items  # not in the experiment


def test_a_server_with_an_unknown_head_in_an_arm_or_without_a_store_does_not_start(registry, models_dir, tmp_path):
    experiments = {"e": Experiment("e", "tiny", (Arm("a", 1.0, True, head="sasrec"),))}
    store = f"sqlite://{tmp_path}/h.db"
    config = ServerConfig(models_dir=str(models_dir), device="cpu", experiments=experiments, store=store)
    with pytest.raises(ConfigError, match="experiments.e.arms.a.head: unknown head 'sasrec'; installed: 'tiny-mean'"):
        build_service(config, registry)
    config = ServerConfig(models_dir=str(models_dir), device="cpu", experiments=two_arms())
    with pytest.raises(ConfigError, match=r"experiments \('pin'\) log their exposures in the store; set `store`"):
        build_service(config, registry)


def test_exposures_are_logged_counted_and_forgotten_with_the_user(serve, registry, store_url):
    with serve(two_arms(), store=store_url) as server, TemporecClient(server.target) as client:
        with TemporecClient(server.target, metadata=[("x-request-id", "req-alice-1")]) as named:
            first = named.recommend("tiny", history=HISTORY, user_id="alice", k=3)
        client.recommend("tiny", user_id="bob", k=2)  # no history: a cold start is shown too
        client.recommend("tiny", history=HISTORY, user_id="alice", k=3)
        client.recommend("tiny", history=HISTORY, k=3)  # no user: no exposure
        bob = client.recommend("tiny", user_id="bob", k=2)
        logged = exposures_in(registry, store_url)
        assert [(e.user_id, e.arm) for e in logged] == [
            ("alice", first.arm),
            ("bob", bob.arm),
            ("alice", first.arm),
            ("bob", bob.arm),
        ]
        assert logged[0].request_id == "req-alice-1" and logged[0].items == tuple(first.item_ids)
        assert logged[1].items == tuple(bob.item_ids) and len({e.request_id for e in logged}) == 4
        assert all(logged[i].timestamp <= logged[i + 1].timestamp for i in range(3))
        metrics = server.server.metrics.registry
        counted = {
            arm: metrics.get_sample_value("temporec_experiment_exposures_total", {"experiment": "pin", "arm": arm}) or 0
            for arm in ("control", "pinned")
        }
        assert sum(counted.values()) == 4 and counted[first.arm] >= 2
        client.forget_user("alice")
        assert [e.user_id for e in exposures_in(registry, store_url)] == ["bob", "bob"]


def test_a_replay_stamps_exposures_with_the_time_of_the_last_event_read(serve, registry, tmp_path):
    """``exposure_clock = "events"``: recorded events replayed later get exposures at the
    data's time, between the user's events, as they were shown live."""
    url = f"sqlite://{tmp_path}/replay.db"
    experiments = {"pin": replace(two_arms()["pin"], exposure_clock="events")}
    with serve(experiments, store=url) as server, TemporecClient(server.target) as client:
        client.recommend("tiny", history=HISTORY, user_id="alice", k=3)
        client.recommend("tiny", user_id="bob", k=2)  # a cold start: no event read, the server's clock
    alice, bob = exposures_in(registry, url)
    assert alice.timestamp == pytest.approx(HISTORY[-1].timestamp)
    assert bob.timestamp > HISTORY[-1].timestamp + 365 * 86_400  # now, years after the recorded events


def test_outcomes_are_tracked_likes_of_shown_items(serve, registry, store_url):
    arms = (Arm("control", 0.5, control=True), Arm("pinned", 0.5, model_version=VERSION))
    experiments = {"pin": Experiment("pin", "tiny", arms, salt="test-salt", outcome_actions=("like",))}
    users = [f"user-{n}" for n in range(6)]
    with serve(experiments, store=store_url) as server, TemporecClient(server.target) as client:
        shown = {user: client.recommend("tiny", history=HISTORY, user_id=user, k=3) for user in users}
        unshown = {user: next(f"v{i}" for i in range(20) if f"v{i}" not in shown[user].item_ids) for user in users}
        client.track([TrackedEvent(users[0], "like-shown", shown[users[0]].item_ids[1], "like")])
        client.track([TrackedEvent(users[1], "view-shown", shown[users[1]].item_ids[0], "view")])  # not an outcome
        client.track([TrackedEvent(users[2], "like-unshown", unshown[users[2]], "like")])
    opened = open_store(registry, store_url)
    try:
        exposures = opened.exposures("pin")
        histories = {user: opened.history(user, 100) for user in users}
    finally:
        opened.close()
    rows = {row.arm: row for row in report(experiments["pin"], exposures, histories)}
    assert sum(row.users for row in rows.values()) == 6 and sum(row.exposures for row in rows.values()) == 6
    assert rows[shown[users[0]].arm].converted == 1 and sum(row.converted for row in rows.values()) == 1
