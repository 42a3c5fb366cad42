"""Shared pytest fixtures. Each engineer's fixtures live in their own delimited block."""

# ---- gRPC server fixtures (owner: gRPC/API) -------------------------------------------
#
# A tiny encoder/head/domain trio (registered in process, no entry points), an artifact
# built from them, and a real gRPC server on 127.0.0.1 (free port) serving it from a
# background thread. To serve real plugins and models instead, call
#     start_grpc_server(load_registry(), trained_models_dir, default_encoder="local")

import argparse
import asyncio
import contextlib
import hashlib
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from temporec import Domain, Encoder, Head, HeadOutput, hookimpl
from temporec.contract.registry import Registry, load_registry
from temporec.contract.types import Catalog, Dataset, Event
from temporec.model.artifacts import Manifest, save_model
from temporec.model.recommender import SequenceRecommender
from temporec.serving.config import ServerConfig

ROOT = Path(__file__).resolve().parents[1]  # the repository
#: The real data sets beside the checkout (absent on a fresh clone: the tests that need them skip).
SHARED_DATA = ROOT.parent / "shared" / "data"

TINY_ITEMS = 20
#: An Encode call with this text blocks until the test sets the gate (deadline tests).
TINY_WAIT_TEXT, TINY_FAIL_TEXT = "WAIT", "FAIL"
tiny_encoder_gate = threading.Event()


class TinyEncoder(Encoder):
    """Deterministic hash vectors: equal texts, equal vectors; no model to load."""

    name = "tiny-hash"
    model_id = "tiny-hash-v1"
    dim = 8

    def encode(self, texts):
        if TINY_FAIL_TEXT in texts:
            raise RuntimeError("tiny encoder refuses to encode FAIL")
        if TINY_WAIT_TEXT in texts:
            tiny_encoder_gate.wait(timeout=30)
        rows = [
            torch.tensor(list(hashlib.sha256(t.encode()).digest()[: self.dim]), dtype=torch.float) - 127.5
            for t in texts
        ]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


class TinyMeanHead(Head):
    """The running mean of the event vectors, projected: a causal head in a few lines."""

    name = "tiny-mean"
    options = {"scale": 1.0}

    def __init__(self, dim, max_len, **options):
        super().__init__(dim, max_len, **options)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, events, mask):
        counts = mask.cumsum(1).clamp(min=1).unsqueeze(-1)
        return HeadOutput(self.proj(events.cumsum(1) / counts) * self.config["scale"])


class TinyDomain(Domain):
    """Twenty numbered videos; the user "explode" trips a broken business rule."""

    name = "tiny"
    actions = ("view", "like")
    default_head = "tiny-mean"

    def load_dataset(self, path):
        return tiny_dataset()

    def apply_rules(self, query, history, catalog, allowed):
        if query.user_id == "explode":
            raise RuntimeError("tiny rule exploded")
        return super().apply_rules(query, history, catalog, allowed)


class TinyPlugin:
    @hookimpl
    def register_encoders(self, register):
        register(TinyEncoder)

    @hookimpl
    def register_heads(self, register):
        register(TinyMeanHead)

    @hookimpl
    def register_domains(self, register):
        register(TinyDomain)


def tiny_dataset() -> Dataset:
    catalog = Catalog([f"v{i}" for i in range(TINY_ITEMS)], [f"video number {i}" for i in range(TINY_ITEMS)])
    sequences = {
        f"u{u}": [Event(f"v{(u + t) % TINY_ITEMS}", "view", 1_700_000_000 + 60 * t) for t in range(5)] for u in range(8)
    }
    return Dataset("tiny", catalog, sequences)


def build_tiny_artifact(
    root: Path, dim: int = 16, head: type = TinyMeanHead, encoder: str = "tiny-hash", version: str = ""
) -> Path:
    """Save an untrained tiny-mean model for the tiny domain under ``root``. ``head``: a
    TinyMeanHead subclass (same weights) to save instead; ``encoder``: the name of an
    encoder in TinyEncoder's vector space; ``version``: "" for save_model's own."""
    torch.manual_seed(0)
    data = tiny_dataset()
    catalog = data.catalog
    model = SequenceRecommender(head(dim, 32), TinyEncoder().encode(catalog.texts), n_actions=len(TinyDomain.actions))
    popularity = torch.zeros(len(catalog))
    for events in data.sequences.values():
        for event in events:
            popularity[catalog.index[event.item_id]] += 1
    manifest = Manifest(
        domain="tiny",
        head=head.name,
        encoder=encoder,
        encoder_model_id=TinyEncoder.model_id,
        dim=dim,
        max_len=32,
        actions=list(TinyDomain.actions),
        data_name=data.name,
        data_fingerprint=data.fingerprint(),
        metrics={"recall@10": 0.5},
        version=version,
    )
    return save_model(root, manifest, model, catalog, popularity)


class ServerThread:
    """A TemporecServer on its own event loop in a background thread."""

    def __init__(self, registry: Registry, config: ServerConfig):
        self.registry, self.config = registry, config
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        self._started.wait(timeout=120)
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self, wait: bool = True) -> None:
        """Shut the server down gracefully; ``wait``: until it has stopped."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            if wait:
                self._thread.join(timeout=60)

    async def _main(self) -> None:
        from temporec.grpc.server import TemporecServer
        from temporec.serving import build_service

        try:
            self.server = TemporecServer(build_service(self.config, self.registry), self.config)
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._started.set()
        await self._stop.wait()
        await self.server.stop()


def save_video_model(root: Path, version: str) -> Path:
    """An untrained model of the real video domain and lstm head (random text embeddings:
    serving catalog items needs no encoder)."""
    registry = load_registry()
    torch.manual_seed(0)
    catalog = Catalog([f"m{i}" for i in range(12)], [f"movie {i}" for i in range(12)])
    model = SequenceRecommender(registry.heads["lstm"](16, 8), torch.randn(12, 24), n_actions=2)
    manifest = Manifest(
        domain="video",
        head="lstm",
        encoder="local",
        encoder_model_id="random",
        dim=16,
        max_len=8,
        actions=["watch", "rate"],
        version=version,
    )
    return save_model(root, manifest, model, catalog, torch.ones(12))


@pytest.fixture(scope="session")
def tiny_registry() -> Registry:
    """The tiny plugin alone: entry-point plugins are not loaded."""
    return load_registry(extra_plugins={"tiny": TinyPlugin()}, env={"TEMPOREC_PLUGINS": ""})


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-models")
    build_tiny_artifact(root)
    return root


@pytest.fixture(scope="session")
def start_grpc_server():
    """``start_grpc_server(registry, models_dir, **config_fields)``: a context manager
    that serves on 127.0.0.1 (a free port) and yields the ServerThread (``.target``)."""

    @contextlib.contextmanager
    def start(registry: Registry, models_dir: Path, **fields):
        settings = {"default_encoder": "tiny-hash", "device": "cpu", "grace_seconds": 1.0, **fields}
        config = ServerConfig(host="127.0.0.1", port=0, models_dir=str(models_dir), **settings)
        with ServerThread(registry, config) as running:
            yield running

    return start


@pytest.fixture(scope="module")
def grpc_server(start_grpc_server, tiny_registry, tiny_models_dir):
    """A server with the tiny model, shared by a test module."""
    with start_grpc_server(tiny_registry, tiny_models_dir) as running:
        yield running


# ---- end of gRPC server fixtures ------------------------------------------------------


# ---- third-party plugin fixture (shared by test_plugins and test_end_to_end) ------------

EXAMPLE_SOURCE = ROOT / "tests" / "plugin_example"


@pytest.fixture(scope="session")
def example_plugin_path(tmp_path_factory) -> Path:
    """tests/plugin_example installed with pip into a fresh directory (put it on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("example-plugin")
    source = root / "source"  # pip builds in the source tree: build a copy, not the repo
    shutil.copytree(EXAMPLE_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    return target


# ---- operations fixtures (owner: ops; faults, reload, drain, metrics) -------------------


class GatedHead(TinyMeanHead):
    """tiny-mean behind a gate: each forward pass sets ``GatedHead.entered``, then waits (a
    minute at most) for ``GatedHead.gate``, so a test keeps a call in flight, or the head
    hung, by closing the gate."""

    name = "tiny-gated"
    gate = threading.Event()
    entered = threading.Event()

    def forward(self, events, mask):
        self.entered.set()
        self.gate.wait(timeout=60)
        return super().forward(events, mask)


class ExtraPlugin:
    """An in-process plugin that registers the given heads and encoders."""

    def __init__(self, heads=(), encoders=()):
        self.heads, self.encoders = heads, encoders

    @hookimpl
    def register_heads(self, register):
        for head in self.heads:
            register(head)

    @hookimpl
    def register_encoders(self, register):
        for encoder in self.encoders:
            register(encoder)


def tiny_registry_with(heads=(), encoders=()) -> Registry:
    """The tiny plugin plus these heads and encoders (entry-point plugins are not loaded)."""
    plugins = {"tiny": TinyPlugin(), "extra": ExtraPlugin(heads, encoders)}
    return load_registry(extra_plugins=plugins, env={"TEMPOREC_PLUGINS": ""})


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample at http://127.0.0.1:port/metrics: (name, labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# ---- end of operations fixtures ---------------------------------------------------------


# ---- access-log fixtures (owner: security and limits) ------------------------------------


class AccessLog:
    """The access-log records of calls, found by request id. A refused call's status can
    reach the client a moment before its access line is written, so lookups wait for it."""

    def __init__(self, caplog):
        from temporec.grpc.interceptors import RequestIdFilter

        self.caplog = caplog
        caplog.handler.addFilter(RequestIdFilter())

    def record(self, request_id: str, timeout: float = 30.0):
        """The access-log record of the call ``request_id``."""
        import time

        waited_until = time.monotonic() + timeout
        while time.monotonic() < waited_until:
            found = [r for r in self.caplog.records if r.name == "temporec.access" and r.request_id == request_id]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no access-log record for request id {request_id!r}")


@pytest.fixture
def access_log(caplog) -> AccessLog:
    """Every record gets its ``request_id``; ``access_log.record(id)`` waits for a call's line."""
    return AccessLog(caplog)


# ---- end of access-log fixtures ----------------------------------------------------------


def write_ml100k(directory: Path, movies: int = 20, users: int = 40, length: int = 8) -> Path:
    """u.item/u.data where users watch the movies in one fixed cycle; movie 99 is seen
    only twice, so the 5-core drops it."""
    rng = random.Random(0)
    lines = []
    for movie in [*range(1, movies + 1), 99]:
        flags = ["1" if g == 1 + movie % 18 else "0" for g in range(19)]
        lines.append(f"{movie}|Movie {movie} ({1980 + movie})|01-Jan-1990||http://x|" + "|".join(flags))
    (directory / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    rows = []
    for user in range(1, users + 1):
        start = rng.randrange(movies)
        rows += [f"{user}\t{(start + t) % movies + 1}\t4\t{880_000_000 + 60 * t}" for t in range(length)]
    rows += [f"1\t99\t3\t{870_000_000}", f"2\t99\t3\t{870_000_000}"]
    (directory / "u.data").write_text("\n".join(rows) + "\n")
    return directory


def run_command(module, argv: list[str]) -> int:
    """Parse ``argv`` with the command's own parser, as ``temporec`` does, and run it."""
    parser = argparse.ArgumentParser(prog="temporec")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


# ---- event-store fixtures (owner: real time; docs/realtime.md) ----------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real ``redis-server`` on a free loopback port, its data in ``directory``, every
    write synced to its append-only file; stopped by its pid. ``start`` again after
    ``stop`` serves the same port and data."""

    def __init__(self, directory: Path):
        self.directory, self.port = directory, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        command = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client().ping()  # the client retries below until the server answers
        return self

    def client(self):
        import redis
        from redis.backoff import ConstantBackoff
        from redis.retry import Retry

        errors = [redis.ConnectionError, redis.exceptions.BusyLoadingError]
        return redis.Redis(port=self.port, retry=Retry(ConstantBackoff(0.05), 200), retry_on_error=errors)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def redis_server(tmp_path):
    """A started RedisServer; skips the test when redis-server is not on PATH."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH: install it (Debian: apt-get install redis-server)")
    pytest.importorskip("redis", reason="the redis store needs the redis package: pip install 'temporec[redis]'")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    """Each first-party store's URL in turn: an SQLite file, then a started redis-server."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/history.db"
    return request.getfixturevalue("redis_server").url


@pytest.fixture(scope="module")
def store_registry():
    """The tiny plugin and the first-party stores."""
    return load_registry(extra_plugins={"tiny": TinyPlugin()}, env={"TEMPOREC_PLUGINS": "sqlite,redis"})


# ---- end of event-store fixtures ----------------------------------------------------------
