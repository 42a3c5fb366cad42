"""The committed Python stubs are what the .proto generates, server and client share them,
the API has its shape, and the buf gate catches breaking changes."""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import temporec.v1
import temporec_client.v1
from conftest import ROOT
from temporec_client.v1 import recommender_pb2 as pb

ROOT = ROOT
SCRIPT = Path("scripts") / "generate_protos.py"
STUBS = Path("clients") / "python" / "temporec_client" / "v1"
BUF = ROOT / "clients" / "node" / "node_modules" / ".bin" / "buf"


def run_script(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / SCRIPT), *args], capture_output=True, text=True, timeout=120)


def copy_of_the_repo(tmp_path: Path) -> Path:
    """The script, the protos and the stubs: all that the script reads and writes."""
    for part in ("scripts", "protos", STUBS):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_committed_stubs_match_the_protos():
    done = run_script(ROOT, "--check")
    assert done.returncode == 0, done.stderr


def test_check_names_stale_stubs_and_regeneration_fixes_them(tmp_path):
    root = copy_of_the_repo(tmp_path)
    proto = root / "protos" / "temporec" / "v1" / "recommender.proto"
    proto.write_text(
        proto.read_text().replace("  bool allow_repeats = 8;", "  bool allow_repeats = 8;\n  string locale = 99;")
    )
    (root / STUBS / "removed_pb2.py").write_text("# generated from a deleted proto\n")

    done = run_script(root, "--check")
    assert done.returncode == 1
    assert f"{STUBS}/recommender_pb2.py" in done.stderr and "removed_pb2.py" in done.stderr

    assert run_script(root).returncode == 0
    assert run_script(root, "--check").returncode == 0
    assert "locale" in (root / STUBS / "recommender_pb2.pyi").read_text()


def test_the_stubs_live_in_the_client_package_and_the_server_shares_them():
    grpc_module = (ROOT / STUBS / "recommender_pb2_grpc.py").read_text()
    assert "from temporec_client.v1 import recommender_pb2" in grpc_module and "from temporec.v1" not in grpc_module
    assert temporec.v1.recommender_pb2 is temporec_client.v1.recommender_pb2
    assert sys.modules["temporec.v1.recommender_pb2_grpc"] is temporec_client.v1.recommender_pb2_grpc


def test_messages_name_their_real_module_and_pickle():
    event = pb.Event(item_id="v1", action="watch", timestamp_ms=1_700_000_000_000)
    assert type(event).__module__ == "temporec_client.v1.recommender_pb2"
    assert pickle.loads(pickle.dumps(event)) == event


def test_the_service_and_messages_have_the_documented_shape():
    service = pb.DESCRIPTOR.services_by_name["Recommender"]
    assert service.full_name == "temporec.v1.Recommender"
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    assert methods == {
        "Recommend": ("RecommendRequest", "RecommendResponse"),
        "ListComponents": ("ListComponentsRequest", "ListComponentsResponse"),
        "Encode": ("EncodeRequest", "EncodeResponse"),
        "Track": ("TrackRequest", "TrackResponse"),
        "TrackStream": ("TrackStreamRequest", "TrackStreamResponse"),
        "GetHistory": ("GetHistoryRequest", "GetHistoryResponse"),
        "ForgetUser": ("ForgetUserRequest", "ForgetUserResponse"),
    }
    fields = lambda message: list(message.DESCRIPTOR.fields_by_name)  # noqa: E731
    assert fields(pb.Event) == ["item_id", "action", "timestamp_ms", "text"]
    assert fields(pb.RecommendRequest) == [
        "domain",
        "head",
        "encoder",
        "user_id",
        "history",
        "candidate_item_ids",
        "k",
        "allow_repeats",
        "retail_options",
        "news_options",
        "customer_service_options",
        "plugin_options",
        "explain",
        "explain_events",
    ]
    assert fields(pb.RecommendResponse) == [
        "items",
        "domain",
        "head",
        "encoder",
        "model_version",
        "cold_start",
        "candidate_source",
        "rules_applied",
        "timings",
        "hand_off",
        "history_source",
        "experiment",
        "arm",
    ]
    assert fields(pb.TrackedEvent) == ["user_id", "event_id", "item_id", "action", "timestamp_ms", "text"]


# -- the contract gate: scripts/check-protos.sh (buf lint + buf breaking) ------------------

needs_buf = pytest.mark.skipif(not BUF.is_file(), reason=f"no buf at {BUF}; run: npm ci --prefix clients/node")
PROTO = Path("protos") / "temporec" / "v1" / "recommender.proto"


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True, timeout=60)


def edit_and_commit(repo: Path, old: str, new: str) -> None:
    proto = repo / PROTO
    text = proto.read_text()
    assert old in text
    proto.write_text(text.replace(old, new))
    git(repo, "commit", "-qam", f"protos: {new.strip()}")


def repo_with_protos(tmp_path: Path) -> Path:
    """A git repository holding the protos, buf.yaml and the check script, in one commit."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", repo / "protos")
    (repo / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "check-protos.sh", repo / "scripts")
    shutil.copy(ROOT / "buf.yaml", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the API")
    return repo


def check(repo: Path, *args: str) -> subprocess.CompletedProcess:
    script = ["bash", "scripts/check-protos.sh", *args]
    return subprocess.run(
        script, cwd=repo, env={**os.environ, "BUF": str(BUF)}, capture_output=True, text=True, timeout=120
    )


@needs_buf
def test_a_breaking_change_fails_against_the_previous_commit(tmp_path):
    repo = repo_with_protos(tmp_path)
    edit_and_commit(repo, "  int32 k = 7;", "  int64 k = 7;")
    done = check(repo)
    assert done.returncode != 0 and "buf lint: clean" in done.stdout
    assert 'Field "7" with name "k" on message "RecommendRequest" changed type' in done.stdout


@needs_buf
def test_an_undocumented_message_fails_lint(tmp_path):
    repo = repo_with_protos(tmp_path)
    edit_and_commit(repo, "  int32 dim = 3;\n}\n", "  int32 dim = 3;\n}\n\nmessage Undocumented {}\n")
    done = check(repo)
    assert done.returncode != 0 and 'Message "Undocumented" should have a non-empty comment' in done.stdout


@needs_buf
def test_the_last_release_tag_is_the_reference_once_there_is_one(tmp_path):
    repo = repo_with_protos(tmp_path)
    git(repo, "tag", "v0.1.0")
    added = "  bool allow_repeats = 8;\n\n  // The caller's locale.\n  string locale = 99;"
    edit_and_commit(repo, "  bool allow_repeats = 8;", added)
    passed = check(repo)
    assert passed.returncode == 0 and "no breaking change against v0.1.0" in passed.stdout
    edit_and_commit(repo, "  string user_id = 4;", "  reserved 4;")
    edit_and_commit(repo, "  string locale = 99;", "  string locale = 99;\n\n  // Its time zone.\n  string zone = 100;")
    failed = check(repo)  # HEAD~1 already lacks user_id; the tag still has it
    assert failed.returncode != 0 and 'Previously present field "4" with name "user_id"' in failed.stdout


@needs_buf
def test_a_shallow_clone_fetches_the_parent_or_says_why_it_cannot(tmp_path):
    origin = repo_with_protos(tmp_path)
    edit_and_commit(origin, "  int32 k = 7;", "  int64 k = 7;")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(clone)], check=True, timeout=60)
    deepened = check(clone)
    assert deepened.returncode != 0 and 'with name "k"' in deepened.stdout

    orphan = tmp_path / "orphan"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(orphan)], check=True, timeout=60)
    git(orphan, "remote", "remove", "origin")
    skipped = check(orphan)
    assert skipped.returncode == 0 and "buf breaking: skipped, there is no HEAD~1" in skipped.stderr
