"""The example third-party plugin distribution (tests/plugin_example), installed with pip
into a directory of its own and used only as a user would, through temporec's commands
and its gRPC API in separate processes: ``temporec plugins`` lists its four entry
points; its ``podcasts`` domain trains models with its ``decay`` head and with the
first-party ``lstm`` on texts embedded by its ``hashing`` encoder; ``temporec eval``
measures them, and ``temporec serve`` answers Recommend with the domain's rules and
Encode with the encoder. One test per hook (``test_<hook>_...``; see test_plugin_docs).
"""

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from temporec.contract.errors import InvalidArgument
from temporec.data import DataError
from temporec_client import Event, TemporecClient

SHOWS = ("Deep Space", "Kitchen Table", "Market Week", "Old Maps")
EPISODES, LISTENERS = 8, 24
pytestmark = pytest.mark.slow  # pip-installs the package, trains two models, starts a server

ENTRY_POINTS = {
    "example": {"heads": ["decay"], "domains": [], "encoders": [], "stores": []},
    "example-podcasts": {"heads": [], "domains": ["podcasts"], "encoders": [], "stores": []},
    "example-hashing": {"heads": [], "domains": [], "encoders": ["hashing"], "stores": []},
    "example-memory": {"heads": [], "domains": [], "encoders": [], "stores": ["memory"]},
}


def write_podcasts(directory: Path) -> Path:
    """episodes.csv (4 shows x 8 episodes, ids ``s<show>e<episode>``) and listens.csv:
    each listener plays and finishes five episodes of one show in order."""
    directory.mkdir()
    with open(directory / "episodes.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["episode_id", "show", "title"])
        for s, show in enumerate(SHOWS):
            writer.writerows([f"s{s}e{e}", show, f"{show} episode {e}"] for e in range(EPISODES))
    with open(directory / "listens.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "episode_id", "action", "timestamp"])
        for user in range(LISTENERS):
            show, first, time = user % 4, (user // 4) % 3, 1_700_000_000 + 1000 * user
            for episode in range(first, first + 5):
                writer.writerow([f"u{user}", f"s{show}e{episode}", "play", time])
                writer.writerow([f"u{user}", f"s{show}e{episode}", "finish", time + 1800])
                time += 3600
    return directory


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def environment(plugin_path: Path, cache: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPOREC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_path), env.get("PYTHONPATH")]))
    env["TEMPOREC_CACHE_DIR"] = str(cache)
    return {**env, **variables}


def temporec(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "temporec", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory, example_plugin_path):
    """The podcasts data, and one model per head (its default ``decay``, and ``lstm``)."""
    root = tmp_path_factory.mktemp("podcasts")
    data = write_podcasts(root / "data")
    env = environment(example_plugin_path, root / "cache")
    models = {}
    for head in ("decay", "lstm"):
        printed = temporec("train", "--domain", "podcasts", "--head", head, "--encoder", "hashing", "--data", str(data),
                           "--out", str(root / "models"), "--epochs", "3", "--dim", "16", "--max-len", "10",
                           "--device", "cpu", "--threads", "1", env=env)  # fmt: skip
        models[head] = Path(printed.strip().splitlines()[-1])
    return root, env, models


@pytest.fixture(scope="module")
def client(trained):
    root, env, _ = trained
    server = subprocess.Popen(
        [sys.executable, "-m", "temporec", "serve", "--host", "127.0.0.1", "--port", "0", "--device", "cpu",
         "--models", str(root / "models"), "--encoder", "hashing"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        match = re.search(r"serving on (\S+) \((\d+) models\)", line)
        assert match, f"no ready line: {line!r}; stderr: {server.stderr.read()[-3000:]}"
        with TemporecClient(match.group(1), timeout=60) as connected:
            yield connected
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_temporec_plugins_lists_each_entry_point_of_the_distribution(example_plugin_path, tmp_path):
    env = environment(example_plugin_path, tmp_path)
    listing = {info["name"]: info for info in json.loads(temporec("plugins", "--json", env=env))["plugins"]}
    for name, registered in ENTRY_POINTS.items():
        info = listing[name]
        assert (info["distribution"], info["version"], info["error"]) == ("temporec-example-plugin", "0.1.0", "")
        assert info["registered"] == registered

    blocked = json.loads(temporec("plugins", "--json", env={**env, "TEMPOREC_BLOCK_PLUGINS": "example-hashing"}))
    names = {info["name"] for info in blocked["plugins"]}
    assert "example-hashing" not in names and {"example", "example-podcasts"} <= names


def test_register_encoders_the_hashing_encoder_answers_encode(client):
    texts = ["Deep Space episode 1", "deep space, EPISODE 1!", "Kitchen Table episode 3", ""]
    answer = client.encode(texts)  # the server's default encoder: --encoder hashing
    assert (answer.encoder, answer.dim, len(answer.vectors)) == ("hashing", 256, 4)
    assert all(math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5) for vector in answer.vectors)
    same, other = answer.vectors[0], answer.vectors[2]
    assert answer.vectors[1] == same  # case and punctuation do not count
    assert 0 < dot(same, other) < 0.5  # unit vectors; only "episode" is shared
    component = next(c for c in client.list_components().encoders if c.name == "hashing")
    assert component.plugin == "example-hashing"


def test_register_domains_podcasts_trains_and_evaluates_through_the_cli(trained):
    root, env, models = trained
    for head, path in models.items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert (manifest["domain"], manifest["head"], manifest["encoder"]) == ("podcasts", head, "hashing")
        assert manifest["actions"] == ["play", "finish", "skip"]
        assert manifest["data_name"] == str((root / "data").resolve())
    report = json.loads(temporec("eval", "--model", str(models["decay"]), "--device", "cpu", "--json", env=env))
    assert report["same_data_as_training"] and report["users"] == LISTENERS
    assert {"test.hr@10", "test.ndcg@10", "popularity.test.mrr"} <= set(report["metrics"])


def test_register_domains_podcasts_rules_apply_in_recommend(client):
    history = [Event("s0e1", "play"), Event("s0e1", "finish"), Event("s0e2", "play"), Event("s1e0", "skip")]
    result = client.recommend("podcasts", history=history, k=len(SHOWS) * EPISODES)
    assert result.domain == "podcasts" and result.head == "decay"  # the domain's default head
    assert result.rules_applied == ["exclude_finished", "exclude_skipped"]
    assert "s0e2" in result.item_ids  # started, not finished: offered to resume
    assert not {"s0e1", "s1e0"} & set(result.item_ids)

    filtered = client.recommend("podcasts", history=history, k=10, options={"exclude_shows": ["Kitchen Table"]})
    assert "exclude_shows" in filtered.rules_applied
    assert not any(item.startswith("s1") for item in filtered.item_ids)


@pytest.mark.parametrize("head", ["decay", "lstm"])
def test_register_heads_decay_serves_beside_a_first_party_head(client, head):
    result = client.recommend("podcasts", history=[Event("s2e0", "play"), Event("s2e0", "finish")], head=head, k=5)
    assert result.head == head and result.encoder == "hashing" and len(result.items) == 5
    assert "s2e0" not in result.item_ids and all(item.text for item in result.items)
    models = {(m.domain, m.head, m.encoder) for m in client.list_components().models}
    assert models == {("podcasts", "decay", "hashing"), ("podcasts", "lstm", "hashing")}


@pytest.fixture
def example_package(example_plugin_path, monkeypatch):
    """The installed example package, imported in this process."""
    monkeypatch.syspath_prepend(str(example_plugin_path))
    import temporec_example.hashing
    import temporec_example.memory
    import temporec_example.podcasts

    return temporec_example


def test_register_domains_podcasts_names_the_file_line_and_allowed_values(example_package, tmp_path):
    data = write_podcasts(tmp_path / "data")
    with open(data / "listens.csv", "a", encoding="utf-8") as f:
        f.write("u1,s0e1,pause,1700000000\n")
    line = 2 + 2 * 5 * LISTENERS  # the header, then two rows per episode heard
    with pytest.raises(DataError, match=rf"listens.csv:{line}: action 'pause'; allowed: 'finish', 'play', 'skip'"):
        example_package.podcasts.PodcastsDomain().load_dataset(str(data))


def test_register_encoders_hashing_checks_its_options_and_names_its_space(example_package):
    encoder_cls = example_package.hashing.HashingEncoder
    with pytest.raises(InvalidArgument, match="encoder 'hashing': option 'dim' is 1"):
        encoder_cls(dim=1)
    words_only = encoder_cls(dim=64, pairs=False)
    assert words_only.model_id == "hashing-v1-64" and words_only.encode(["a b", "b a"]).shape == (2, 64)
    assert torch.equal(*words_only.encode(["a b", "b a"]))  # a bag of words: order does not count


def test_register_stores_memory_keeps_each_user_time_ordered_and_capped(example_package):
    from temporec import Event, StoreSettings, TrackedEvent

    store = example_package.memory.MemoryStore("memory:", StoreSettings(max_events=2))
    events = [TrackedEvent("u", f"e{t}", Event(f"s0e{t}", "play", float(10 - t))) for t in range(3)]
    assert store.append(events) == 3 and store.append(events[:1]) == 0  # a retry: stored once
    assert [e.event_id for e in store.history("u", 5)] == ["e1", "e0"]  # the newest two, oldest first
    assert store.forget("u") == 2 and store.history("u", 5) == []
