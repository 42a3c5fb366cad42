"""A/B experiments through the API (docs/realtime.md): real gRPC servers on loopback serving
the tiny model, with an experiment of two arms."""

from __future__ import annotations

import grpc
import pytest

from conftest import TinyPlugin, build_tiny_artifact
from temporec.contract.registry import load_registry
from temporec.contract.stores import Exposure, StoreSettings
from temporec.serving import build_service
from temporec.serving.config import ConfigError, ServerConfig
from temporec.serving.experiments import Arm, Experiment
from temporec_client import Event, TemporecClient, TemporecError

VERSION = "tiny-experiment-v1"
HISTORY = [Event("v3", "view", 1_700_000_000.0), Event("v7", "view", 1_700_000_060.0)]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment-models")
    build_tiny_artifact(root, version=VERSION)
    return root


def two_arms(control_share: float = 0.5, pinned: str = VERSION) -> dict[str, Experiment]:
    arms = (Arm("control", control_share, control=True), Arm("pinned", 1 - control_share, model_version=pinned))
    return {"pin": Experiment("pin", "tiny", arms, salt="test-salt")}


def arms_of(client: TemporecClient, users: list[str]) -> list[str]:
    return [client.recommend("tiny", history=HISTORY, user_id=user, k=3).arm for user in users]


@pytest.fixture
def serve(start_grpc_server, registry, models_dir, tmp_path):
    """``serve(experiments, **settings)``: a server with the experiments and an SQLite store."""
    store = f"sqlite://{tmp_path}/history.db"
    return lambda experiments, **fields: start_grpc_server(
        registry, models_dir, experiments=experiments, store=store, **fields
    )


@pytest.fixture(scope="module")
def registry():
    return load_registry(extra_plugins={"tiny": TinyPlugin()}, env={"TEMPOREC_PLUGINS": "sqlite"})


def exposures_in(tmp_path, experiment: str = "pin") -> list[Exposure]:
    """The experiment's exposures, read from the server's SQLite file beside it."""
    store = load_registry(env={"TEMPOREC_PLUGINS": "sqlite"}).stores["sqlite"]
    opened = store(f"sqlite://{tmp_path}/history.db", StoreSettings())
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


def test_exposures_are_logged_counted_and_forgotten_with_the_user(serve, tmp_path):
    with serve(two_arms()) as server, TemporecClient(server.target) as client:
        with TemporecClient(server.target, metadata=[("x-request-id", "req-alice-1")]) as named:
            first = named.recommend("tiny", history=HISTORY, user_id="alice", k=3)
        client.recommend("tiny", user_id="bob", k=2)  # no history: a cold start is shown too
        client.recommend("tiny", history=HISTORY, user_id="alice", k=3)
        client.recommend("tiny", history=HISTORY, k=3)  # no user: no exposure
        bob = client.recommend("tiny", user_id="bob", k=2)
        logged = exposures_in(tmp_path)
        assert [(e.user_id, e.arm) for e in logged] == [
            ("alice", first.arm),
            ("bob", bob.arm),
            ("alice", first.arm),
            ("bob", bob.arm),
        ]
        assert logged[0].request_id == "req-alice-1" and logged[0].items == tuple(first.item_ids)
        assert logged[1].items == tuple(bob.item_ids) and len({e.request_id for e in logged}) == 4
        assert all(logged[i].timestamp <= logged[i + 1].timestamp for i in range(3))
        registry = server.server.metrics.registry
        counted = {
            arm: registry.get_sample_value("temporec_experiment_exposures_total", {"experiment": "pin", "arm": arm})
            or 0
            for arm in ("control", "pinned")
        }
        assert sum(counted.values()) == 4 and counted[first.arm] >= 2
        client.forget_user("alice")
        assert [e.user_id for e in exposures_in(tmp_path)] == ["bob", "bob"]
