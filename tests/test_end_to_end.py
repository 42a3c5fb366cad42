"""The whole path as a user runs it, with every part real: ``temporec train`` on MovieLens-1M
titles with the local MiniLM encoder -> ``temporec serve`` in its own process -> the Python
client. A third-party plugin (tests/plugin_example, installed with pip) adds a head that the
server serves without any change to it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from temporec_client import Event, TemporecClient, TemporecError

SHARED_ML1M = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m"
USERS = 150  # a slice of ML-1M: enough to train on in seconds

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_ML1M.is_dir(), reason=f"needs the MovieLens-1M copy in {SHARED_ML1M}"),
]


def environment(plugin_path: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPOREC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_path), env.get("PYTHONPATH")]))
    env["TEMPOREC_CACHE_DIR"] = str(cache)
    return env


def temporec(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "temporec", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory, example_plugin_path):
    """Two models (lstm, and the example plugin's decay head) served by a real server."""
    root = tmp_path_factory.mktemp("e2e")
    data = root / "ml-1m"
    data.mkdir()
    lines = (SHARED_ML1M / "ml-1m.user_sequences.tsv").read_text().splitlines()[:USERS]
    (data / "ml-1m.user_sequences.tsv").write_text("\n".join(lines) + "\n")
    os.symlink(SHARED_ML1M / "movies.dat", data / "movies.dat")
    env = environment(example_plugin_path, root / "cache")
    for head in ("lstm", "decay"):
        temporec(
            "train",
            "--domain",
            "video",
            "--head",
            head,
            "--data",
            str(data),
            "--out",
            str(root / "models"),
            "--epochs",
            "2",
            "--dim",
            "32",
            "--max-len",
            "30",
            env=env,
        )

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "temporec",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--models",
            str(root / "models"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"serving on (\S+) \((\d+) models\)", line)
        assert match, f"no ready line: {line!r}; stderr: {server.stderr.read()[-3000:]}"
        with TemporecClient(match.group(1), timeout=60) as client:
            yield client
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_health_and_components(served):
    assert served.health() == "SERVING"
    components = served.list_components()
    assert {"lstm", "decay"} <= {head.name for head in components.heads}
    assert next(h for h in components.heads if h.name == "decay").plugin == "example"
    assert {(m.domain, m.head, m.encoder) for m in components.models} == {
        ("video", "lstm", "local"),
        ("video", "decay", "local"),
    }
    for model in components.models:
        assert model.items > 1000 and model.data_fingerprint and "test.ndcg@10" in model.metrics


@pytest.mark.parametrize("head", ["lstm", "decay"])
def test_recommend_with_each_head(served, head):
    history = [Event("1", "rate", 978300760), Event("2355", "rate", 978300800), Event("3114", "rate", 978301000)]
    result = served.recommend("video", history=history, head=head, k=5)
    assert result.head == head and result.encoder == "local" and len(result.items) == 5
    assert not {"1", "2355", "3114"} & set(result.item_ids)  # watched titles are not repeated
    assert all(item.text for item in result.items)  # titles come back with the items


def test_an_item_outside_the_catalog_is_read_from_its_text(served):
    history = [Event("", "rate", text="A space opera with rebels, droids and a galactic empire")]
    result = served.recommend("video", history=history, k=3)
    assert len(result.items) == 3 and not result.cold_start


def test_empty_history_gets_the_cold_start_answer(served):
    result = served.recommend("video", history=[], k=3)
    assert result.cold_start and result.head == "popularity" and len(result.items) == 3


def test_encode_uses_the_local_encoder(served):
    embeddings = served.encode(["Toy Story (1995)", "Heat (1995)"])
    assert embeddings.encoder == "local" and embeddings.dim == 384 and len(embeddings.vectors) == 2


def test_unknown_head_is_not_found_with_the_choices(served):
    with pytest.raises(TemporecError) as caught:
        served.recommend("video", history=[Event("1")], head="transformer-xl")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND and "'decay'" in caught.value.details
