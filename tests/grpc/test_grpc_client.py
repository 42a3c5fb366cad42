"""The Python client (temporec_client) against a real server, and its distribution."""

import ast
import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone

import grpc
import pytest
import tomllib

from conftest import ROOT
from temporec_client import Event, Recommendation, TemporecClient, TemporecError

ROOT = ROOT
CLIENT_DIR = ROOT / "clients" / "python"
#: What the client distribution may import besides the standard library.
ALLOWED_IMPORTS = {"grpc", "grpc_health", "google.protobuf", "temporec_client"}
#: ... and what it may depend on.
ALLOWED_REQUIREMENTS = {"grpcio", "protobuf", "grpcio-health-checking"}


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
    command = [
        sys.executable,
        str(script),
        "--target",
        grpc_server.target,
        "--domain",
        "tiny",
        "-k",
        "3",
        "v1",
        "v2:like",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "server health: SERVING" in done.stdout and "top 3 for tiny from tiny-mean" in done.stdout
    assert done.stdout.count("video number") == 3


def test_the_example_script_reports_errors(grpc_server):
    script = CLIENT_DIR / "examples" / "recommend.py"
    command = [sys.executable, str(script), "--target", grpc_server.target, "--domain", "books", "v1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "error NOT_FOUND" in done.stderr


@pytest.mark.parametrize(
    "path", sorted((CLIENT_DIR / "temporec_client").rglob("*.py")), ids=lambda p: str(p.relative_to(CLIENT_DIR))
)
def test_the_client_imports_only_grpc_protobuf_and_the_stubs(path):
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module)
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names
        and not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_IMPORTS)
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"


def requirement_name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()


@pytest.fixture(scope="module")
def client_wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The client distribution built from a copy of clients/python (pip builds in the tree)."""
    root = tmp_path_factory.mktemp("client-wheel")
    source = root / "source"
    shutil.copytree(
        CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "-w",
        str(root),
        str(source),
    ]
    subprocess.run(command, check=True, timeout=300)
    (wheel,) = root.glob("temporec_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        yield archive


def test_the_client_wheel_depends_on_grpc_and_protobuf_alone(client_wheel):
    (metadata,) = [name for name in client_wheel.namelist() if name.endswith(".dist-info/METADATA")]
    lines = client_wheel.read(metadata).decode().splitlines()
    requires = [line.split(":", 1)[1] for line in lines if line.startswith("Requires-Dist:")]
    required = {requirement_name(r) for r in requires if "extra ==" not in r}
    assert required == ALLOWED_REQUIREMENTS


def test_the_client_wheel_ships_the_stubs_and_nothing_of_the_server(client_wheel):
    names = set(client_wheel.namelist())
    generated = ("__init__.py", "recommender_pb2.py", "recommender_pb2.pyi", "recommender_pb2_grpc.py")
    stubs = {f"temporec_client/v1/{name}" for name in generated}
    assert stubs | {"temporec_client/py.typed", "temporec_client/client.py"} <= names
    assert all(name.split("/")[0] == "temporec_client" or ".dist-info/" in name for name in names)


def test_the_server_distribution_ships_the_same_client_package():
    """One install of the server has the client; no second distribution to find on an index."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "temporec-client" not in {requirement_name(r) for r in project["project"]["dependencies"]}
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"]["temporec_client"] == "clients/python/temporec_client"


# -- generic tools: the reflection calls of docs/clients.md ------------------------------

DOCS = ROOT / "docs" / "clients.md"
REFLECT = ROOT / "scripts" / "grpc_reflect.py"


def documented_commands(tool: str) -> list[str]:
    """The ``tool`` command lines of docs/clients.md's shell blocks."""
    return [line for line in DOCS.read_text().splitlines() if line.startswith(f"{tool} ")]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """``host:port`` of scripts/serve_test_model.py: the real video/lstm/local plugins."""
    command = [
        sys.executable,
        str(ROOT / "scripts" / "serve_test_model.py"),
        "--workdir",
        str(tmp_path_factory.mktemp("real")),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()  # the ready line, or "" when it exited
        if "serving on " not in line:
            raise RuntimeError(
                f"the test server did not start (exit code {server.wait(timeout=10)}): {' '.join(command)}"
            )
        yield line.split("serving on ")[1].split()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["python scripts/grpc_reflect.py", "grpcurl"])
def test_the_documented_reflection_calls_work(real_server, tool):
    commands = documented_commands(tool)
    assert len(commands) == 7, "docs/clients.md shows seven calls per tool"
    if tool == "grpcurl" and not shutil.which("grpcurl"):
        pytest.skip("grpcurl is not installed (not packaged for Debian); the same calls ran with grpc_reflect.py")
    for line in commands:
        args = [a.replace("localhost:50051", real_server) for a in shlex.split(line)]
        executable = [sys.executable, str(REFLECT)] if tool.startswith("python") else ["grpcurl"]
        done = subprocess.run(executable + args[len(tool.split()) :], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        verb = next((arg for arg in args if arg in ("list", "describe")), "call")
        if verb == "list":
            assert "temporec.v1.Recommender" in done.stdout
        elif verb == "describe":
            assert "temporec.v1.RecommendRequest is a message:" in done.stdout and "int32 k = 7;" in done.stdout
        else:
            assert json.loads(done.stdout)


def test_reflection_calls_report_the_status_of_a_failed_call(grpc_server):
    request = '{"domain": "books", "history": [{"item_id": "v1"}], "k": 3}'
    command = [sys.executable, str(REFLECT), "-d", request, grpc_server.target, "temporec.v1.Recommender/Recommend"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("ERROR: NOT_FOUND: domain: unknown domain 'books'")


def test_reflection_describes_services_and_calls_with_json(grpc_server):
    def reflect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REFLECT), *args], capture_output=True, text=True, timeout=120)

    described = reflect(grpc_server.target, "describe", "temporec.v1.Recommender")
    assert (
        "rpc Recommend ( .temporec.v1.RecommendRequest ) returns ( .temporec.v1.RecommendResponse );"
        in described.stdout
    )
    request = '{"domain": "tiny", "history": [{"itemId": "v1"}], "k": 2}'  # lowerCamelCase is accepted too
    called = reflect("-d", request, grpc_server.target, "temporec.v1.Recommender/Recommend")
    response = json.loads(called.stdout)
    assert len(response["items"]) == 2 and set(response["items"][0]) == {"item_id", "score", "text"}
