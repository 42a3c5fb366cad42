"""The committed Python stubs are what the .proto generates, and the API has its shape."""

import shutil
import subprocess
import sys
from pathlib import Path

from temporec.v1 import recommender_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path("scripts") / "generate_protos.py"


def run_script(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / SCRIPT), *args], capture_output=True, text=True, timeout=120)


def copy_of_the_repo(tmp_path: Path) -> Path:
    """The script, the protos and the stubs: all that the script reads and writes."""
    for part in ("scripts", "protos", "server/temporec/v1"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_committed_stubs_match_the_protos():
    done = run_script(ROOT, "--check")
    assert done.returncode == 0, done.stderr


def test_check_names_stale_stubs_and_regeneration_fixes_them(tmp_path):
    root = copy_of_the_repo(tmp_path)
    proto = root / "protos" / "temporec" / "v1" / "recommender.proto"
    proto.write_text(proto.read_text().replace("  bool allow_repeats = 8;", "  bool allow_repeats = 8;\n  string locale = 9;"))
    (root / "server" / "temporec" / "v1" / "removed_pb2.py").write_text("# generated from a deleted proto\n")

    done = run_script(root, "--check")
    assert done.returncode == 1
    assert "server/temporec/v1/recommender_pb2.py" in done.stderr and "removed_pb2.py" in done.stderr

    assert run_script(root).returncode == 0
    assert run_script(root, "--check").returncode == 0
    assert "locale" in (root / "server" / "temporec" / "v1" / "recommender_pb2.pyi").read_text()


def test_the_service_and_messages_have_the_documented_shape():
    service = pb.DESCRIPTOR.services_by_name["Recommender"]
    assert service.full_name == "temporec.v1.Recommender"
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    assert methods == {
        "Recommend": ("RecommendRequest", "RecommendResponse"),
        "ListComponents": ("ListComponentsRequest", "ListComponentsResponse"),
        "Encode": ("EncodeRequest", "EncodeResponse"),
    }
    fields = lambda message: list(message.DESCRIPTOR.fields_by_name)  # noqa: E731
    assert fields(pb.Event) == ["item_id", "action", "timestamp_ms", "text"]
    assert fields(pb.RecommendRequest) == [
        "domain", "head", "encoder", "user_id", "history", "candidate_item_ids", "k", "allow_repeats",
    ]
    assert fields(pb.RecommendResponse) == [
        "items", "domain", "head", "encoder", "model_version", "cold_start", "candidate_source", "rules_applied", "timings",
    ]
