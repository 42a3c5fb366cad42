"""The triton encoder against a real Triton Inference Server.

The server is the one bundled in the nvidia-pytriton wheel (Python backend only, on the
CPU), started by pid on a free loopback port and serving a repository written by
``temporec export-triton``; its log is printed when a test fails. temporec runs as a real
gRPC server (tests/conftest.py) with the installed plugins and two copies of one model,
one per encoder, so the ``local`` and ``triton`` answers can be compared.
"""

import asyncio
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from conftest import run_command, write_ml100k
from temporec.cli import main as temporec_main
from temporec.cli import train as train_command
from temporec.contract.errors import InvalidArgument, Unavailable
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog
from temporec.grpc.server import encoder_health_name
from temporec.model.artifacts import ENCODER_DIR, Manifest, load_model, read_manifest, save_model
from temporec.model.recommender import SequenceRecommender
from temporec.triton import configs
from temporec.triton.export import VERSION, Encoder, onnx_max_error, validate_repository
from temporec.triton.local_server import LocalTriton, free_port
from temporec_client import Event, TemporecClient, TemporecError
from temporec_plugins.encoders.local import LocalEncoder
from temporec_plugins.encoders.triton import TritonEncoder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        (platform.system(), platform.machine()) != ("Linux", "x86_64"),
        reason="the Triton server bundled in nvidia-pytriton runs on Linux x86_64 only",
    ),
]

NAME = "enc"  # model-name prefix of the exported repository
TUNED_NAME = "enc_tuned"  # the tuned language model of a trained model, exported from its artifact
SERVED = [NAME, f"{NAME}_tokens", f"{NAME}_tokenizer", f"{NAME}_pooling", TUNED_NAME]  # ONNX needs the NGC container
T0 = 1_700_000_000.0
TITLES = [
    "Toy Story (1995)",
    "Heat (1995)",
    "Casino (1995)",
    "Sense and Sensibility (1995)",
    "Babe (1995)",
    "Apollo 13 (1995)",
    "Braveheart (1995)",
    "Taxi Driver (1976)",
    "Clerks (1994)",
    "Star Wars (1977)",
    "Pulp Fiction (1994)",
    "Forrest Gump (1994)",
    "The Lion King (1994)",
    "Speed (1994)",
    "True Lies (1994)",
    "Fargo (1996)",
    "Twister (1996)",
    "Scream (1996)",
    "Titanic (1997)",
    "Alien (1979)",
    "Amélie (2001)",
    "Spirited Away (2001)",
    "The Matrix (1999)",
    "Fight Club (1999)",
    "Office Space (1999)",
]
TEXTS = ["a quiet film about the sea", "", "Die Hard: explosions in a skyscraper " * 40, "北京 travel guide", "x"]
Code = grpc.StatusCode


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_artifact(tmp_path_factory) -> Path:
    """A model whose training tuned its language model (LoRA, one epoch), by the command."""
    data, root = write_ml100k(tmp_path_factory.mktemp("ml100k")), tmp_path_factory.mktemp("tuned-models")
    argv = ["train", "--data", str(data), "--out", str(root), "--tuning", "lora", "--epochs", "1", "--dim", "16",
            "--max-len", "8", "--text-max-length", "16", "--encoder-lr", "1e-3", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert run_command(train_command, argv) == 0
    return next(root.glob("video-lstm-*"))


@pytest.fixture(scope="module")
def repository(tmp_path_factory, tuned_artifact) -> Path:
    """Every format, written (and validated) by the real command, and the tuned model's
    encoder beside them."""
    out = tmp_path_factory.mktemp("triton-repo")
    tuned = ["export-triton", "--out", str(out), "--artifact", str(tuned_artifact), "--name", TUNED_NAME]
    assert temporec_main(tuned) == 0
    status = temporec_main(
        [
            "export-triton",
            "--out",
            str(out),
            "--name",
            NAME,
            "--format",
            "python",
            "--format",
            "python-tokens",
            "--format",
            "onnx",
            "--max-batch-size",
            "16",
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory):
    server = LocalTriton(repository, SERVED, workdir=tmp_path_factory.mktemp("triton-run"))
    try:
        server.start()
        yield server
    finally:
        server.stop()  # by pid, with its process group: nothing outlives the tests


@pytest.fixture(autouse=True)
def triton_log_on_failure(request, triton):
    """Print the end of Triton's log after a test that failed (pytest shows a failed
    test's teardown output with its report)."""
    failures = request.session.testsfailed
    yield
    if request.session.testsfailed > failures:
        print(f"---- the last lines of {triton.log_path} (Triton pid {triton.pid}) ----\n{triton.log_tail(80)}")


@pytest.fixture(scope="module")
def local():
    return LocalEncoder(device="cpu")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, registry, local) -> Path:
    """One untrained video/lstm model saved twice: for the local and the triton encoder."""
    root = tmp_path_factory.mktemp("triton-models")
    catalog = Catalog([f"m{i}" for i in range(len(TITLES))], TITLES)
    embeddings = local.encode(TITLES)
    for encoder in ("local", "triton"):
        torch.manual_seed(0)
        model = SequenceRecommender(registry.heads["lstm"](32, 20), embeddings, n_actions=2)
        manifest = Manifest(
            domain="video",
            head="lstm",
            encoder=encoder,
            encoder_model_id=local.model_id,
            dim=32,
            max_len=20,
            actions=["watch", "rate"],
            data_name="titles",
            version=f"1-{encoder}",
        )
        save_model(root, manifest, model, catalog, torch.arange(len(catalog), dtype=torch.float))
    return root


@pytest.fixture(scope="module")
def server(start_grpc_server, registry, models_dir, triton):
    encoders = {"triton": {"url": triton.url, "model": NAME}, "local": {"device": "cpu"}}
    with start_grpc_server(registry, models_dir, default_encoder="triton", encoders=encoders) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with TemporecClient(server.target, timeout=60) as client:
        yield client


def history(text: str):
    return [Event("m3", "watch", T0), Event("new-title", "watch", T0 + 60, text=text), Event("m9", "rate", T0 + 120)]


def call_error(function, *args, **kwargs) -> TemporecError:
    with pytest.raises(TemporecError) as caught:
        function(*args, **kwargs)
    return caught.value


def wait_for(condition, what: str, seconds: float = 30.0):
    """Poll ``condition`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"waited {seconds:.0f} s for {what}")


def statistics(triton: LocalTriton, model: str) -> tuple[int, int]:
    """Triton's (inference_count, execution_count) of ``model``: texts vs batches run."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(triton.url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def statistics_since(before: tuple[int, int], triton: LocalTriton, model: str, texts: int) -> tuple[int, int]:
    """(texts, batches) run since ``before``, once Triton has recorded all ``texts``
    (it records a batch just after answering it)."""

    def recorded():
        inferences, executions = (now - then for now, then in zip(statistics(triton, model), before))
        return (inferences, executions) if inferences >= texts else None

    return wait_for(recorded, f"Triton to record {texts} inferences of {model}")


# -- export-triton ----------------------------------------------------------------------


def test_every_config_parses_as_a_triton_model_config(repository):
    checks = validate_repository(repository)
    assert len(checks) == 7  # six formats of the base encoder, and the tuned one
    ensemble = configs.read(repository / f"{NAME}_ensemble" / configs.CONFIG_FILE)
    steps = [step.model_name for step in ensemble.ensemble_scheduling.step]
    assert steps == [f"{NAME}_tokenizer", f"{NAME}_onnx", f"{NAME}_pooling"]
    onnx = configs.read(repository / f"{NAME}_onnx" / configs.CONFIG_FILE)
    assert onnx.platform == "onnxruntime_onnx" and onnx.max_batch_size == 16 and list(onnx.input[0].dims) == [-1]
    assert onnx.dynamic_batching.max_queue_delay_microseconds == 2000
    assert onnx.parameters[configs.MODEL_ID_PARAMETER].string_value == "sentence-transformers/all-MiniLM-L6-v2"


def test_the_onnx_model_matches_torch(repository):
    encoder = Encoder.load()
    assert onnx_max_error(repository / f"{NAME}_onnx" / VERSION / "model.onnx", encoder, 256) <= 1e-4


def test_validation_names_the_file_and_line_of_a_bad_config(repository, tmp_path):
    for model in (f"{NAME}_pooling", f"{NAME}_ensemble"):
        shutil.copytree(repository / model, tmp_path / model)
    config = tmp_path / f"{NAME}_pooling" / configs.CONFIG_FILE
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(InvalidArgument, match=rf"{NAME}_pooling/config.pbtxt:2:1 .*max_batch_sise"):
        validate_repository(tmp_path)


def test_validation_checks_the_ensemble_wiring(repository, tmp_path):
    shutil.copytree(repository / f"{NAME}_ensemble", tmp_path / f"{NAME}_ensemble")
    shutil.copytree(repository / f"{NAME}_pooling", tmp_path / f"{NAME}_pooling")
    with pytest.raises(InvalidArgument, match=rf"uses model '{NAME}_tokenizer', which is not in the repository"):
        validate_repository(tmp_path)


def test_gpu_options_are_written_for_the_ngc_container(tmp_path):
    serving = configs.Serving(max_batch_size=32, instance_kind="gpu", instances=2)
    config = configs.onnx_encoder("m", 384, "space", serving, tensorrt="fp16")
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert config.instance_group[0].kind == configs.INSTANCE_KINDS["gpu"] and config.instance_group[0].count == 2
    (tmp_path / "m" / VERSION).mkdir(parents=True)
    (tmp_path / "m" / VERSION / "model.onnx").write_bytes(b"")
    configs.write(config, tmp_path / "m")
    assert configs.read(tmp_path / "m" / configs.CONFIG_FILE) == config
    with pytest.raises(InvalidArgument, match="needs GPU instances"):
        configs.onnx_encoder("m", 384, "space", configs.Serving(), tensorrt="fp16")


def test_the_ensembles_python_steps_run_on_triton(triton, repository, local):
    """tokenizer (Triton) -> the ONNX file (onnxruntime, as Triton's ONNX backend would)
    -> pooling (Triton) gives the local encoder's embeddings."""
    import onnxruntime
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(triton.url) as client:
        text = grpcclient.InferInput("TEXT", [len(TEXTS), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode()] for t in TEXTS], dtype=np.object_))
        tokens = client.infer(f"{NAME}_tokenizer", [text])
        ids, mask = tokens.as_numpy("input_ids"), tokens.as_numpy("attention_mask")
        session = onnxruntime.InferenceSession(str(repository / f"{NAME}_onnx" / VERSION / "model.onnx"))
        (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        inputs = []
        for name, values, datatype in (("last_hidden_state", hidden, "FP32"), ("attention_mask", mask, "INT64")):
            inputs.append(grpcclient.InferInput(name, list(values.shape), datatype))
            inputs[-1].set_data_from_numpy(values)
        embeddings = client.infer(f"{NAME}_pooling", inputs).as_numpy("EMBEDDING")
    assert ids.shape == (len(TEXTS), 256)
    np.testing.assert_allclose(embeddings, local.encode(TEXTS).numpy(), atol=1e-4)


# -- the triton encoder -------------------------------------------------------------------


def test_encode_through_triton_equals_the_local_encoder(client, local):
    result = client.encode(TEXTS, encoder="triton")
    assert (result.encoder, result.dim) == ("triton", 384)
    np.testing.assert_allclose(np.array(result.vectors), local.encode(TEXTS).numpy(), atol=1e-5)


def test_the_tokens_interface_equals_the_local_encoder(triton, local):
    encoder = TritonEncoder(url=triton.url, model=f"{NAME}_tokens")
    try:
        assert encoder.interface.kind == "tokens" and not encoder.interface.pooled
        assert encoder.model_id == local.model_id and encoder.max_length == 256
        vectors = asyncio.run(encoder.aencode(TEXTS, timeout=30))
        np.testing.assert_allclose(vectors.numpy(), local.encode(TEXTS).numpy(), atol=1e-5)
        np.testing.assert_allclose(encoder.encode(TEXTS).numpy(), vectors.numpy(), atol=1e-6)
    finally:
        encoder.close()


def test_texts_beyond_max_batch_size_are_split(triton, local):
    """The model takes 16 texts per call (read from its config): 40 texts are 3 calls."""
    encoder = TritonEncoder(url=triton.url, model=NAME)
    texts = [f"film number {i}" for i in range(40)]
    try:
        assert encoder.interface.max_batch_size == 16
        before = statistics(triton, NAME)
        vectors = asyncio.run(encoder.aencode(texts))
    finally:
        encoder.close()
    assert statistics_since(before, triton, NAME, len(texts)) == (40, 3)
    np.testing.assert_allclose(vectors.numpy(), local.encode(texts).numpy(), atol=1e-5)


def test_recommend_through_triton_equals_the_local_encoder(client):
    events = history("a documentary about deep sea creatures")
    through_triton = client.recommend("video", events, k=10, encoder="triton")
    through_local = client.recommend("video", events, k=10, encoder="local")
    assert through_triton.encoder == "triton" and through_local.encoder == "local"
    assert through_triton.item_ids == through_local.item_ids
    np.testing.assert_allclose(
        [i.score for i in through_triton.items], [i.score for i in through_local.items], atol=1e-4
    )


def test_concurrent_recommends_reach_triton_as_batches(client, triton):
    calls = 48
    before = statistics(triton, NAME)
    start, results = threading.Barrier(calls), [None] * calls

    def recommend(i: int) -> None:
        start.wait()
        results[i] = client.recommend("video", history(f"an unseen film, number {i}"), k=5, encoder="triton")

    threads = [threading.Thread(target=recommend, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    inferences, executions = statistics_since(before, triton, NAME, calls)
    assert all(len(result.items) == 5 for result in results)
    assert inferences == calls
    assert executions <= calls // 2, f"{calls} texts took {executions} executions: requests were not coalesced"


def test_list_components_describes_the_triton_encoder(client, triton):
    (encoder,) = [e for e in client.list_components().encoders if e.name == "triton"]
    assert encoder.details["url"] == triton.url and encoder.details["interface"] == "text"
    assert encoder.details["max_batch_size"] == "16"


def test_round_robin_over_the_addresses_of_a_dns_name(triton, local):
    encoder = TritonEncoder(url=f"dns:///{triton.url}", model=NAME, load_balancing="round_robin")
    try:
        np.testing.assert_allclose(encoder.encode(["balanced"]).numpy(), local.encode(["balanced"]).numpy(), atol=1e-5)
    finally:
        encoder.close()
    with pytest.raises(
        InvalidArgument, match="option 'load_balancing' is 'random'; allowed: '', 'pick_first', 'round_robin'"
    ):
        TritonEncoder(url=triton.url, load_balancing="random")


def test_start_up_fails_with_the_url_and_model_named(triton):
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable, match=rf"model 'enc' at {url}: cannot reach Triton"):
        TritonEncoder(url=url, model=NAME)
    with pytest.raises(Unavailable, match=rf"model 'nope' at {triton.url}: the model is not ready.*'enc' \(READY\)"):
        TritonEncoder(url=triton.url, model="nope")
    with pytest.raises(InvalidArgument, match="option 'timeout' is 0"):
        TritonEncoder(url=triton.url, timeout=0)


# -- faults (these stop, freeze and restart the shared Triton: keep them last) ------------------


def test_a_frozen_triton_gives_deadline_exceeded_not_a_hang(client, triton, local):
    encoder = TritonEncoder(url=triton.url, model=NAME, retries=0)

    async def encode_with_a_guard():
        # The outer guard only catches a hang: the encoder's own 1 s deadline must fire first.
        return await asyncio.wait_for(encoder.aencode(["frozen"], timeout=1.0), 30)

    triton.pause()
    try:
        error = call_error(client.encode, ["frozen"], encoder="triton", timeout=1.5)
        with pytest.raises(asyncio.TimeoutError, match=r"model 'enc' at .*: no answer within the deadline"):
            asyncio.run(encode_with_a_guard())
    finally:
        triton.resume()
        encoder.close()
    assert error.code is Code.DEADLINE_EXCEEDED
    np.testing.assert_allclose(
        client.encode(["thawed"], encoder="triton").vectors, local.encode(["thawed"]).numpy(), atol=1e-5
    )


def test_triton_down_fails_fast_and_recovers_without_restarting_temporec(client, triton, local):
    health = encoder_health_name("triton")
    events = history("a film nobody has seen yet")
    catalog_only = [Event("m3", "watch", T0), Event("m9", "rate", T0 + 60)]
    expected = client.recommend("video", catalog_only, k=5, encoder="triton").item_ids
    wait_for(lambda: client.health(health) == "SERVING", "the encoder's health to be SERVING")

    triton.stop()
    error = call_error(client.encode, ["anything"], encoder="triton")
    assert error.code is Code.UNAVAILABLE
    assert f"model 'enc' at {triton.url} is unavailable" in error.details and "retry later" in error.details
    assert call_error(client.recommend, "video", events, encoder="triton").code is Code.UNAVAILABLE
    assert client.recommend("video", catalog_only, k=5, encoder="triton").item_ids == expected  # cached item embeddings
    wait_for(lambda: client.health(health) == "NOT_SERVING", "the encoder's health to turn NOT_SERVING")
    assert client.health("") == "SERVING"  # the server still answers what needs no encoder

    triton.start()
    wait_for(lambda: client.health(health) == "SERVING", "the encoder's health to recover")
    result = client.encode(["back again"], encoder="triton")
    np.testing.assert_allclose(result.vectors, local.encode(["back again"]).numpy(), atol=1e-5)
    assert len(client.recommend("video", events, k=5, encoder="triton").items) == 5


# -- TLS and the command line ---------------------------------------------------------------


def test_tls_to_triton(repository, tmp_path, local):
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    with LocalTriton(repository, [NAME], workdir=tmp_path / "run", tls=(str(certificate), str(key))) as secure:
        encoder = TritonEncoder(url=secure.url, model=NAME, ssl=True, root_certificates=str(certificate))
        try:
            np.testing.assert_allclose(
                encoder.encode(["over TLS"]).numpy(), local.encode(["over TLS"]).numpy(), atol=1e-5
            )
        finally:
            encoder.close()
        with pytest.raises(Unavailable, match="cannot reach Triton"):
            TritonEncoder(url=secure.url, model=NAME)  # plain text to a TLS port


def test_temporec_serve_with_the_triton_encoder(triton, models_dir, tmp_path, local):
    """The whole path as an operator runs it: export-triton (the repository fixture),
    Triton, and ``temporec serve`` configured with the triton encoder."""
    config = tmp_path / "temporec.toml"
    config.write_text(
        f'host = "127.0.0.1"\nport = 0\nmodels_dir = "{models_dir}"\ndefault_encoder = "triton"\ndevice = "cpu"\n'
        f'[encoders.triton]\nurl = "{triton.url}"\nmodel = "{NAME}"\n'
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "temporec", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = serve.stdout.readline()
        while line and not line.startswith("temporec serving on "):
            line = serve.stdout.readline()
        assert line, "temporec serve exited before serving"
        target = line.split()[3]
        with TemporecClient(target, timeout=60) as client:
            result = client.recommend("video", history("a road movie across the desert"), k=5)
            embedding = client.encode(["a road movie across the desert"]).vectors
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert result.encoder == "triton" and len(result.items) == 5
    np.testing.assert_allclose(embedding, local.encode(["a road movie across the desert"]).numpy(), atol=1e-5)


# -- a tuned language model, exported from its artifact -------------------------------------


@pytest.fixture(scope="module")
def tuned_local(tuned_artifact):
    """The tuned model's encoder in process, as the server runs it without Triton."""
    return LocalEncoder(model=str(tuned_artifact / ENCODER_DIR), max_length=16, device="cpu")


def test_triton_serves_a_tuned_models_encoder_as_it_runs_in_process(triton, tuned_artifact, tuned_local):
    manifest = read_manifest(tuned_artifact)
    encoder = TritonEncoder(url=triton.url, model=TUNED_NAME)
    try:
        assert encoder.model_id == manifest.tuned_encoder_id and encoder.max_length == 16
        np.testing.assert_allclose(encoder.encode(TEXTS).numpy(), tuned_local.encode(TEXTS).numpy(), atol=1e-5)
        catalog = load_model(tuned_artifact, load_registry().heads)
        stored = catalog.model.text_embeddings.numpy()  # the item vectors training computed
        np.testing.assert_allclose(encoder.encode(catalog.catalog.texts).numpy(), stored, atol=1e-5)
    finally:
        encoder.close()


def test_recommend_and_encode_with_a_tuned_model_answer_alike_through_triton(
    start_grpc_server, registry, triton, tuned_artifact
):
    """Text-only events ranked by the tuned model: its own encoder in process, then the
    same encoder on Triton standing in for it (encoder_substitutes)."""
    version = read_manifest(tuned_artifact).version
    events = [Event("", "watch", T0, text="Movie 3 (1983)"), Event("", "watch", T0 + 60, text="a film never seen")]
    answers = {}
    for served_by, settings in {
        "local": {"encoders": {"local": {"device": "cpu"}}},
        "triton": {"encoders": {"triton": {"url": triton.url, "model": TUNED_NAME}}, "encoder_substitutes": {"local": "triton"}},
    }.items():  # fmt: skip
        with start_grpc_server(registry, tuned_artifact.parent, **settings) as running:
            with TemporecClient(running.target, timeout=60) as client:
                answers[served_by] = (
                    client.recommend("video", events, k=5),
                    client.encode(["Movie 3 (1983)"], model_version=version),
                )
    (local_result, local_vectors), (triton_result, triton_vectors) = answers["local"], answers["triton"]
    assert (local_result.encoder, triton_result.encoder) == ("local", "triton")
    assert [i.item_id for i in triton_result.items] == [i.item_id for i in local_result.items]
    np.testing.assert_allclose([i.score for i in triton_result.items], [i.score for i in local_result.items], atol=1e-4)
    assert (local_vectors.encoder, triton_vectors.encoder) == ("local", "triton")
    np.testing.assert_allclose(triton_vectors.vectors, local_vectors.vectors, atol=1e-5)


def test_an_untuned_triton_model_cannot_stand_in_for_a_tuned_one(start_grpc_server, registry, triton, tuned_artifact):
    settings = {"encoders": {"triton": {"url": triton.url, "model": NAME}}, "encoder_substitutes": {"local": "triton"}}
    with start_grpc_server(registry, tuned_artifact.parent, **settings) as running:
        with TemporecClient(running.target, timeout=60) as client:
            error = call_error(client.recommend, "video", [Event("", "watch", T0, text="a new film")], k=3)
            assert error.code == Code.FAILED_PRECONDITION
            assert "cannot stand in" in error.details and "export-triton --artifact" in error.details
            catalog_only = client.recommend("video", [Event("1", "watch", T0)], k=3)
            assert len(catalog_only.items) == 3  # the stored item vectors need no encoder
            error = call_error(client.encode, ["x"], encoder="triton", model_version="v")
            assert error.code == Code.INVALID_ARGUMENT and "set one of them" in error.details
            error = call_error(client.encode, ["x"], model_version="no-such-version")
            assert error.code == Code.NOT_FOUND and read_manifest(tuned_artifact).version in error.details


def test_export_triton_refuses_an_artifact_without_a_tuned_encoder(models_dir, tuned_artifact, tmp_path, capsys):
    untuned = next(models_dir.glob("video-lstm-*"))
    assert temporec_main(["export-triton", "--out", str(tmp_path / "a"), "--artifact", str(untuned)]) == 2
    assert "did not tune its language model" in capsys.readouterr().err
    argv = ["export-triton", "--out", str(tmp_path / "b"), "--artifact", str(tuned_artifact), "--max-length", "8"]
    assert temporec_main(argv) == 2
    assert "--max-length: not with --artifact" in capsys.readouterr().err
