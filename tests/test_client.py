"""The Python client (temporec_client) against a real server."""

import ast
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest

from temporec_client import Event, Recommendation, TemporecClient, TemporecError

CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "python"
#: What the client distribution may depend on besides the standard library.
ALLOWED_IMPORTS = {"grpc", "grpc_health", "temporec.v1", "temporec_client"}


@pytest.fixture(scope="module")
def client(grpc_server):
    with TemporecClient(grpc_server.target, timeout=30) as client:
        yield client


def test_event_timestamps_become_unix_milliseconds():
    assert Event("v1", timestamp=1_700_000_000.5).to_proto().timestamp_ms == 1_700_000_000_500
    aware = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert Event("v1", timestamp=aware).to_proto().timestamp_ms == round(aware.timestamp() * 1000)
    assert Event("v1").to_proto().timestamp_ms == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        Event("v1", timestamp=datetime(2024, 1, 2)).to_proto()


def test_recommend_accepts_plain_item_ids_and_returns_a_dataclass(client):
    result = client.recommend("tiny", history=["v1", "v2"], k=3)
    assert isinstance(result, Recommendation) and len(result.item_ids) == 3
    assert not {"v1", "v2"} & set(result.item_ids)


def test_errors_carry_the_status_code_and_details(client):
    with pytest.raises(TemporecError) as caught:
        client.recommend("no-such-domain", history=["v1"])
    error = caught.value
    assert isinstance(error, Exception) and error.code is grpc.StatusCode.NOT_FOUND
    assert "'tiny'" in error.details and str(error).startswith("NOT_FOUND: ")


def test_health_of_an_unknown_service_is_not_found(client):
    with pytest.raises(TemporecError) as caught:
        client.health("no.such.Service")
    assert caught.value.code is grpc.StatusCode.NOT_FOUND


def test_metadata_and_per_call_timeouts_are_accepted(grpc_server):
    with TemporecClient(grpc_server.target, timeout=5, metadata=[("x-request-id", "abc")]) as client:
        assert client.encode(["hello"], timeout=10).dim == 8


def test_calls_without_a_deadline_are_served(grpc_server):
    with TemporecClient(grpc_server.target, timeout=None) as client:
        assert len(client.recommend("tiny", history=["v1"], k=2).items) == 2
        assert client.encode(["no deadline"]).dim == 8


def test_closing_the_client_closes_its_channel(grpc_server):
    with TemporecClient(grpc_server.target) as client:
        assert client.health() == "SERVING"
    with pytest.raises(ValueError):
        client.health()


def test_an_unreachable_server_is_unavailable():
    with TemporecClient("127.0.0.1:1", timeout=5) as client, pytest.raises(TemporecError) as caught:
        client.health()
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE


def test_the_example_script_prints_recommendations(grpc_server):
    script = CLIENT_DIR / "examples" / "recommend.py"
    command = [sys.executable, str(script), "--target", grpc_server.target, "--domain", "tiny", "-k", "3", "v1", "v2:like"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "server health: SERVING" in done.stdout and "top 3 for tiny from tiny-mean" in done.stdout
    assert done.stdout.count("video number") == 3


def test_the_example_script_reports_errors(grpc_server):
    script = CLIENT_DIR / "examples" / "recommend.py"
    command = [sys.executable, str(script), "--target", grpc_server.target, "--domain", "books", "v1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "error NOT_FOUND" in done.stderr


@pytest.mark.parametrize("path", sorted((CLIENT_DIR / "temporec_client").glob("*.py")), ids=lambda p: p.name)
def test_the_client_imports_only_grpc_protobuf_and_the_stubs(path):
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module)
    outside = {
        name for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names
        and not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_IMPORTS)
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"
