"""A/B experiments through the API (docs/realtime.md): real gRPC servers on loopback serving
the tiny model, with an experiment of two arms."""

from __future__ import annotations

import grpc
import pytest

from conftest import build_tiny_artifact
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


def test_the_response_names_the_experiment_and_a_sticky_arm(start_grpc_server, tiny_registry, models_dir):
    users = [f"user-{n}" for n in range(40)]
    with start_grpc_server(tiny_registry, models_dir, experiments=two_arms()) as server:
        with TemporecClient(server.target) as client:
            answer = client.recommend("tiny", history=HISTORY, user_id="user-1", k=3)
            assert answer.experiment == "pin" and answer.arm in ("control", "pinned")
            assert answer.model_version == VERSION and answer.items
            first = arms_of(client, users)
            assert first == arms_of(client, users)
            assert set(first) == {"control", "pinned"}
            anonymous = client.recommend("tiny", history=HISTORY, k=3)
            assert (anonymous.experiment, anonymous.arm) == ("", "")
    with start_grpc_server(tiny_registry, models_dir, experiments=two_arms()) as server:  # restarted
        with TemporecClient(server.target) as client:
            assert arms_of(client, users) == first


def test_an_arm_naming_a_version_that_is_not_loaded_fails_its_users_only(start_grpc_server, tiny_registry, models_dir):
    with start_grpc_server(tiny_registry, models_dir, experiments=two_arms(0.0, "v-missing")) as server:
        with TemporecClient(server.target) as client:
            with pytest.raises(TemporecError) as raised:
                client.recommend("tiny", history=HISTORY, user_id="someone", k=3)
            assert raised.value.code is grpc.StatusCode.NOT_FOUND
            assert "version 'v-missing'" in raised.value.details
            assert client.recommend("tiny", history=HISTORY, k=3).items  # not in the experiment


def test_a_server_with_an_unknown_head_in_an_arm_does_not_start(tiny_registry, models_dir):
    experiments = {"e": Experiment("e", "tiny", (Arm("a", 1.0, True, head="sasrec"),))}
    config = ServerConfig(models_dir=str(models_dir), device="cpu", experiments=experiments)
    with pytest.raises(ConfigError, match="experiments.e.arms.a.head: unknown head 'sasrec'; installed: 'tiny-mean'"):
        build_service(config, tiny_registry)
