"""Safe model loading and reloads: damaged artifacts are refused with a clear message,
training writes atomically, and a reload (the service call, the Admin RPC with its
tokens, SIGHUP) swaps all models at once or keeps the old ones."""

import asyncio
import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import grpc
import pytest

from conftest import ROOT, GatedHead, TinyMeanHead, build_tiny_artifact, save_video_model, tiny_registry_with
from temporec.contract.errors import FailedPrecondition
from temporec.contract.types import Event, Query
from temporec.grpc.admin import load_admin_tokens
from temporec.model.artifacts import (
    CATALOG,
    MANIFEST,
    WEIGHTS,
    _sha256,
    find_artifacts,
    load_model,
)
from temporec.serving.config import ConfigError, ServerConfig
from temporec.serving.service import RecommenderService
from temporec.v1 import admin_pb2, admin_pb2_grpc
from temporec_client import TemporecClient

Code = grpc.StatusCode
T0 = 1_700_000_000.0
TESTS = ROOT / "tests"


@pytest.fixture(scope="module")
def registry():
    return tiny_registry_with(heads=[GatedHead])


@pytest.fixture(autouse=True)
def open_gate():
    GatedHead.gate.set()
    yield
    GatedHead.gate.set()


# -- damaged artifacts ------------------------------------------------------------------


def rewrite_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.update(changes)
    (path / MANIFEST).write_text(json.dumps(manifest))


def resign(path: Path) -> None:
    """Record the files' current checksums, as a tool that rewrote them on purpose would."""
    rewrite_manifest(path, files={name: _sha256(path / name) for name in (WEIGHTS, CATALOG)})


def flip_a_byte(path):
    data = bytearray((path / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(data))


def truncate(path):
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) // 2])


def truncate_and_resign(path):
    truncate(path)
    resign(path)


def add_an_item_and_resign(path):
    with open(path / CATALOG, "a") as f:
        f.write(json.dumps({"item_id": "extra", "text": "one item too many"}) + "\n")
    resign(path)


DAMAGES = {
    "a flipped byte": (flip_a_byte, "model.safetensors is missing or does not match its checksum"),
    "truncated weights": (truncate, "model.safetensors is missing or does not match its checksum"),
    "a missing catalog": (lambda p: (p / CATALOG).unlink(), "catalog.jsonl is missing or does not match"),
    "truncated weights, re-signed": (truncate_and_resign, "incompatible artifact"),
    "a truncated manifest": (lambda p: (p / MANIFEST).write_text('{"domain": "ti'), "unreadable manifest"),
    "another format": (lambda p: rewrite_manifest(p, format=99), "artifact format 99, this server reads 1"),
    "no checksums": (lambda p: rewrite_manifest(p, files={}), "lists no checksum for catalog.jsonl, model.safetensors"),
    "a head not installed": (lambda p: rewrite_manifest(p, head="tiny-gone"), "head 'tiny-gone' is not installed"),
    "another width": (lambda p: rewrite_manifest(p, dim=32), "incompatible artifact"),
    "an unknown head option": (lambda p: rewrite_manifest(p, head_options={"depth": 3}), "unknown options ['depth']"),
    "a catalog longer than the weights": (add_an_item_and_resign, "catalog.jsonl has 21 items, the weights 20"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_artifact_is_refused_naming_it_and_why(tmp_path, registry, damage):
    path = build_tiny_artifact(tmp_path)
    load_model(path, registry.heads)  # intact, it loads
    spoil, message = DAMAGES[damage]
    spoil(path)
    with pytest.raises(FailedPrecondition) as refused:
        load_model(path, registry.heads)
    assert str(refused.value).startswith(str(path)) and message in str(refused.value)


def test_an_interrupted_save_leaves_nothing_behind(tmp_path, monkeypatch):
    import temporec.model.artifacts as artifacts

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "_write_catalog", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_tiny_artifact(tmp_path)
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import temporec.model.artifacts as artifacts
from conftest import build_tiny_artifact

write_catalog = artifacts._write_catalog

def write_then_stall(path, catalog):
    write_catalog(path, catalog)
    print("writing", flush=True)
    time.sleep(600)

artifacts._write_catalog = write_then_stall
build_tiny_artifact(__import__("pathlib").Path(sys.argv[2]))
"""


def test_a_training_run_killed_while_saving_leaves_no_model_to_load(tmp_path, registry):
    models = tmp_path / "models"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(TESTS), str(models)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()  # SIGKILL: no cleanup runs
        writer.communicate()
    assert [p.name.startswith(".partial-") for p in models.iterdir()] == [True]  # the half-written staging directory
    assert find_artifacts(models) == []
    service = RecommenderService(registry, models, device="cpu")
    asyncio.run(service.start())
    assert service.models == {}
    saved = build_tiny_artifact(models)
    assert find_artifacts(models) == [saved]  # the next save is unaffected


# -- RecommenderService.reload ------------------------------------------------------------


def query(head="tiny-mean"):
    return Query(domain="tiny", history=[Event("v1", "view", T0), Event("v2", "view", T0 + 60)], head=head, k=3)


def served_versions(service) -> dict[str, str]:
    return {head: serving.loaded.version for (_, head, _), serving in service.models.items()}


def test_reload_serves_new_versions(tmp_path, registry):
    build_tiny_artifact(tmp_path, version="1")

    async def scenario():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()
        assert (await service.recommend(query())).model_version == "1"
        build_tiny_artifact(tmp_path, version="2")
        build_tiny_artifact(tmp_path, head=GatedHead, version="1")
        result = await service.reload()
        assert result.reloaded and result.errors == []
        assert sorted((m.head, m.version) for m in result.models) == [("tiny-gated", "1"), ("tiny-mean", "2")]
        assert (await service.recommend(query())).model_version == "2"
        assert (await service.recommend(query("tiny-gated"))).model_version == "1"
        await service.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("damage", ["a flipped byte", "a head not installed"])
def test_a_failed_reload_keeps_the_old_models_and_says_why(tmp_path, registry, damage):
    build_tiny_artifact(tmp_path, version="1")

    async def scenario():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()
        build_tiny_artifact(tmp_path, version="2")
        broken = build_tiny_artifact(tmp_path, head=GatedHead, version="2")
        spoil, message = DAMAGES[damage]
        spoil(broken)
        result = await service.reload()
        assert not result.reloaded
        assert len(result.errors) == 1 and result.errors[0].startswith(str(broken)) and message in result.errors[0]
        assert [(m.head, m.version) for m in result.models] == [("tiny-mean", "1")]
        assert (await service.recommend(query())).model_version == "1"
        await service.close()

    asyncio.run(scenario())


def test_a_reload_that_finds_no_model_keeps_the_old_ones(tmp_path, registry):
    path = build_tiny_artifact(tmp_path, version="1")

    async def scenario():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()
        for name in (WEIGHTS, CATALOG, MANIFEST):
            (path / name).unlink()
        result = await service.reload()
        assert not result.reloaded and "no model artifact found" in result.errors[0]
        assert served_versions(service) == {"tiny-mean": "1"}
        await service.close()

    asyncio.run(scenario())


def test_calls_in_flight_finish_on_the_old_model_which_is_then_freed(tmp_path, registry, caplog):
    build_tiny_artifact(tmp_path, head=GatedHead, version="1")

    async def scenario():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()
        old = weakref.ref(next(iter(service.models.values())))
        GatedHead.gate.clear()
        GatedHead.entered.clear()
        in_flight = asyncio.create_task(service.recommend(query("tiny-gated")))
        assert await asyncio.to_thread(GatedHead.entered.wait, 30)  # it reached the head, where it waits
        build_tiny_artifact(tmp_path, head=GatedHead, version="2")
        assert (await service.reload()).reloaded
        GatedHead.gate.set()
        assert (await in_flight).model_version == "1"
        assert (await service.recommend(query("tiny-gated"))).model_version == "2"
        await asyncio.sleep(0)  # the old model's worker notices it is retired and ends
        gc.collect()
        assert old() is None  # no task or thread keeps the replaced model alive
        assert "destroyed but it is pending" not in caplog.text  # its worker ended, it was not dropped
        await service.close()

    asyncio.run(scenario())


def test_concurrent_calls_during_reloads_see_one_whole_set(tmp_path, registry):
    """Two models replaced together: every answer comes from one set (same version for
    both heads in a pair of calls made back to back on the loop), none fails."""
    for head in (TinyMeanHead, GatedHead):
        build_tiny_artifact(tmp_path, head=head, version="1")

    async def scenario():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()

        async def pair():
            both = await asyncio.gather(service.recommend(query()), service.recommend(query("tiny-gated")))
            return {r.model_version for r in both}

        pairs = [asyncio.create_task(pair()) for _ in range(20)]
        for version in ("2", "3"):
            for head in (TinyMeanHead, GatedHead):
                build_tiny_artifact(tmp_path, head=head, version=version)
            reload = asyncio.create_task(service.reload())
            pairs += [asyncio.create_task(pair()) for _ in range(20)]
            assert (await reload).reloaded
        for versions in await asyncio.gather(*pairs):
            assert len(versions) == 1
        assert served_versions(service) == {"tiny-mean": "3", "tiny-gated": "3"}
        await service.close()

    asyncio.run(scenario())


# -- the Admin service ----------------------------------------------------------------------


def reload_models(target: str, token: str | None):
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    with grpc.insecure_channel(target) as channel:
        return admin_pb2_grpc.AdminStub(channel).ReloadModels(
            admin_pb2.ReloadModelsRequest(), metadata=metadata, timeout=60
        )


def admin_error(target: str, token: str | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        reload_models(target, token)
    return caught.value


def test_without_admin_tokens_the_admin_service_refuses_and_says_how_to_enable_it(
    start_grpc_server, registry, tmp_path
):
    build_tiny_artifact(tmp_path, version="1")
    with start_grpc_server(registry, tmp_path) as running:
        for token in (None, "", "anything"):
            error = admin_error(running.target, token)
            assert error.code() is Code.PERMISSION_DENIED
            assert "admin_tokens_file" in error.details() and "TEMPOREC_ADMIN_TOKENS" in error.details()


def test_admin_reload_needs_an_admin_token_and_reports_the_outcome(start_grpc_server, registry, tmp_path):
    models, tokens = tmp_path / "models", tmp_path / "admin-tokens"
    tokens.write_text("# operators\nfirst-secret\n\nsecond-secret\n")
    build_tiny_artifact(models, version="1")
    with start_grpc_server(registry, models, admin_tokens_file=str(tokens), admin_tokens="env-secret") as running:
        assert admin_error(running.target, None).code() is Code.UNAUTHENTICATED
        assert admin_error(running.target, "").code() is Code.UNAUTHENTICATED
        assert admin_error(running.target, "first-secre").code() is Code.PERMISSION_DENIED
        assert admin_error(running.target, "# operators").code() is Code.PERMISSION_DENIED

        build_tiny_artifact(models, version="2")
        answer = reload_models(running.target, "second-secret")
        assert answer.reloaded and [(m.head, m.version) for m in answer.models] == [("tiny-mean", "2")]

        broken = build_tiny_artifact(models, version="3")
        flip_a_byte(broken)
        answer = reload_models(running.target, "env-secret")
        assert not answer.reloaded and [m.version for m in answer.models] == ["2"]
        assert len(answer.errors) == 1 and "does not match its checksum" in answer.errors[0]
        with TemporecClient(running.target, timeout=30) as client:
            assert client.recommend("tiny", history=["v1"]).model_version == "2"


def test_admin_tokens_come_from_the_file_and_the_setting(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("  one  \n# a comment\n\ntwo # the second\n")
    config = ServerConfig(admin_tokens_file=str(tokens), admin_tokens="three, ,four")
    assert sorted(load_admin_tokens(config)) == ["four", "one", "three", "two"]
    assert load_admin_tokens(ServerConfig()) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read"),
        ("# only a comment\n\n", "holds no token"),
        ("good\ntwo words\n", "line 2: a token may hold"),
    ],
)
def test_an_unusable_admin_tokens_file_is_a_configuration_error(tmp_path, content, message):
    tokens = tmp_path / "tokens"
    if content is not None:
        tokens.write_text(content)
    with pytest.raises(ConfigError, match=f"admin_tokens_file.*{message}") as refused:
        load_admin_tokens(ServerConfig(admin_tokens_file=str(tokens)))
    assert str(tokens) in str(refused.value)


# -- SIGHUP -------------------------------------------------------------------------------------


def test_sighup_reloads_the_models_of_temporec_serve(tmp_path):
    save_video_model(tmp_path, "1")
    command = [
        sys.executable,
        "-m",
        "temporec",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--models",
        str(tmp_path),
    ]
    env = {**os.environ, "TEMPOREC_CONFIG": ""}
    env.pop("TEMPOREC_PLUGINS", None)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(120, server.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    try:
        ready = re.fullmatch(r"temporec serving on 127\.0\.0\.1:(\d+) \(1 models\)\n", server.stdout.readline())
        assert ready, server.stderr.read() if server.poll() is not None else "no ready line"
        with TemporecClient(f"127.0.0.1:{ready[1]}", timeout=30) as client:
            assert client.recommend("video", history=["m1", "m2"]).model_version == "1"
            save_video_model(tmp_path, "2")
            server.send_signal(signal.SIGHUP)
            for _ in range(200):  # the reload runs in the background; poll until it is done
                if client.recommend("video", history=["m1", "m2"]).model_version == "2":
                    break
                threading.Event().wait(0.1)
            assert client.recommend("video", history=["m1", "m2"]).model_version == "2"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_serving_freezes_the_heap_and_a_reload_thaws_it_to_free_the_old_models(start_grpc_server, registry, tmp_path):
    """A full collection would walk every object of the models while calls wait: serving
    freezes the heap (gc.freeze). A reload thaws it, so that the replaced models can be
    collected, and settles it again once the calls that chose them are over (twice
    max_request_seconds later)."""
    build_tiny_artifact(tmp_path, version="1")
    with start_grpc_server(registry, tmp_path, admin_tokens="secret", max_request_seconds=0.2) as running:
        assert gc.get_freeze_count() > 0
        old = weakref.ref(next(iter(running.server.service.models.values())))
        build_tiny_artifact(tmp_path, version="2")
        assert reload_models(running.target, "secret").reloaded
        settled = threading.Event()
        running._loop.call_soon_threadsafe(lambda: running._loop.call_later(1.0, settled.set))
        assert settled.wait(30)  # 0.4 s after the reload: settled
        assert gc.get_freeze_count() > 0 and old() is None
    assert gc.get_freeze_count() == 0  # a stopped server leaves the heap as it found it
