"""Encoders warmed at start, and the cache of out-of-catalog texts: a real gRPC server on
loopback, the real bundled all-MiniLM-L6-v2 and a model whose training tuned it."""

import threading

import pytest
import torch

from conftest import ServerThread, run_command, write_ml100k
from temporec.cli import train as train_command
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog
from temporec.model import DEFAULT_MODEL_ID
from temporec.model.artifacts import ENCODER_DIR, Manifest, read_manifest, save_model
from temporec.model.recommender import SequenceRecommender
from temporec.serving.config import ServerConfig
from temporec.serving.metrics import PROCESS_REGISTRY
from temporec.triton.local_server import free_port
from temporec_client import Event, TemporecClient, TemporecError
from temporec_plugins.encoders.local import LocalEncoder

pytestmark = pytest.mark.slow

TITLES = ["Toy Story (1995)", "Heat (1995)", "Casino (1995)", "Babe (1995)", "Apollo 13 (1995)", "Fargo (1996)"]
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def save_text_model(root, registry, encoder: str = "local", head: str = "ar"):
    """An untrained video model over MiniLM embeddings of TITLES, trained-with ``encoder``."""
    embeddings = LocalEncoder(device="cpu").encode(TITLES)
    torch.manual_seed(0)
    model = SequenceRecommender(registry.heads[head](16, 8), embeddings, n_actions=2)
    manifest = Manifest(
        domain="video",
        head=head,
        encoder=encoder,
        encoder_model_id=DEFAULT_MODEL_ID,
        dim=16,
        max_len=8,
        actions=["watch", "rate"],
        version=f"text-{encoder}",
    )
    catalog = Catalog([f"m{i}" for i in range(len(TITLES))], TITLES)
    return save_model(root, manifest, model, catalog, torch.ones(len(TITLES)))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, registry):
    """A base-MiniLM model (head ar) and one whose training tuned MiniLM (lstm, top layer)."""
    root = tmp_path_factory.mktemp("models")
    save_text_model(root, registry)
    data = write_ml100k(tmp_path_factory.mktemp("ml100k"))
    argv = ["train", "--data", str(data), "--out", str(root), "--tuning", "top", "--top-layers", "1", "--epochs", "1",
            "--dim", "16", "--max-len", "8", "--text-max-length", "16", "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert run_command(train_command, argv) == 0
    return root


def config(models_dir, **fields) -> ServerConfig:
    settings = {"device": "cpu", "grace_seconds": 1.0, "encoders": {"local": {"device": "cpu"}}, **fields}
    return ServerConfig(host="127.0.0.1", port=0, models_dir=str(models_dir), **settings)


def tuned_version(models_dir) -> str:
    return read_manifest(next(models_dir.glob("video-lstm-*"))).version


def text_only(text: str):
    return [Event("", "watch", T0, text=text)]


class HealthWatch:
    """Polls a starting server's health, noting for every answer whether the server's
    encoders had started by then."""

    def __init__(self, running: ServerThread):
        self.running, self.seen, self._stop = running, [], threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for_serving(self):
        self._thread.join(timeout=60)

    def _poll(self):
        while not self._stop.is_set() and getattr(self.running, "server", None) is None:
            self._stop.wait(0.01)
        with TemporecClient(self.running.target, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    status = client.health()
                except TemporecError:  # not listening yet
                    status = "UNREACHABLE"
                self.seen.append((status, len(self.running.server.service.encoders.started)))
                if status == "SERVING":
                    return
                self._stop.wait(0.02)


def test_warm_up_starts_every_models_encoder_before_the_server_reports_serving(registry, models_dir):
    running = ServerThread(registry, config(models_dir))
    with HealthWatch(running) as watch, running:
        watch.wait_for_serving()
        service = running.server.service
        started = dict(service.encoders.started)
        assert len(started) == 2  # the base MiniLM and the tuned one (its own instance)
        assert all(encoder._coalescer._worker is not None for encoder in started.values())  # each ran a text
        with TemporecClient(running.target, timeout=60) as client:
            assert client.health() == "SERVING"
            client.recommend("video", text_only("a heist in Los Angeles"), k=3, head="ar")
            client.recommend("video", text_only("a heist in Los Angeles"), k=3, head="lstm")
        assert service.encoders.started == started  # the first calls loaded nothing
    assert watch.seen and watch.seen[-1][0] == "SERVING"
    assert all(encoders == 2 for status, encoders in watch.seen if status == "SERVING"), watch.seen


def test_without_warm_up_the_first_text_call_starts_the_encoder(registry, models_dir):
    with ServerThread(registry, config(models_dir, warm_encoders=False)) as running:
        service = running.server.service
        assert service.encoders.started == {}
        with TemporecClient(running.target, timeout=60) as client:
            client.recommend("video", text_only("a heist in Los Angeles"), k=3, head="ar")
        assert list(service.encoders.started) == ["local"]


def test_a_remote_encoder_that_cannot_warm_up_leaves_the_server_serving(registry, tmp_path, caplog):
    save_text_model(tmp_path, registry, encoder="triton")
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = config(tmp_path, encoders={"triton": {"url": closed, "timeout": 2}})
    with ServerThread(registry, settings) as running, TemporecClient(running.target, timeout=60) as client:
        assert client.health() == "SERVING"
        assert len(client.recommend("video", ["m1", "m2"], k=3).items) == 3  # catalog items need no encoder
    assert "model text-triton: its encoder did not warm up (Unavailable: " in caplog.text
    assert f"encoder 'triton': model 'temporec_encoder' at {closed}" in caplog.text


def hits(encoder: str = "local") -> float:
    labels = {"encoder": encoder, "result": "hit"}
    return PROCESS_REGISTRY.get_sample_value("temporec_encoder_cache_lookups_total", labels) or 0.0


def test_repeated_texts_come_from_a_bounded_cache_per_encoder_instance(registry, models_dir):
    texts = ["a quiet film about the sea", "北京 travel guide", "x", "a heist in Los Angeles", "Die Hard"]
    with ServerThread(registry, config(models_dir, encoder_cache_size=3)) as running:
        pool = running.server.service.encoders
        with TemporecClient(running.target, timeout=60) as client:
            first = client.encode(texts[:2], encoder="local").vectors
            before = hits()
            again = client.encode(texts[:2], encoder="local").vectors
            assert hits() - before == 2
            assert again == first  # the very vectors, not a re-encoding
            client.encode(texts[2:], encoder="local")
            assert len(pool.caches[id(pool.started["local"])]) == 3  # bounded: the oldest left

            # The tuned model's encoder has a cache of its own: its vector for a text the
            # base encoder has cached is its own, as computed without any cache.
            tuned = client.encode(texts[3:4], model_version=tuned_version(models_dir)).vectors
        ((key, tuned_encoder),) = [(k, e) for k, e in pool.started.items() if k != "local"]
        assert ENCODER_DIR in tuned_encoder.source
        assert torch.allclose(torch.tensor(tuned), tuned_encoder.encode(texts[3:4]), atol=1e-6)
        assert not torch.allclose(torch.tensor(tuned), pool.started["local"].encode(texts[3:4]), atol=1e-3)
        assert len(pool.caches[id(tuned_encoder)]) == 1  # that text (the warm-up's is not cached)
