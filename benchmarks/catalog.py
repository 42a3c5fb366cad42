"""Large catalogs (issue 17): synthetic catalogs of 10,000, 100,000 and 1,000,000 items
served by a real ``temporec serve``: full artifacts, compact ones, and compact ones with
the approximate index (faiss).

    .venv/bin/python benchmarks/catalog.py           # about 10 minutes: writes the
                                                     # "catalog" section of benchmarks/RESULTS.md
    .venv/bin/python benchmarks/catalog.py --quick   # 10,000 and 100,000 items, printed only

Each catalog is a ``video`` model with the ``lstm`` head (untrained: serving costs do not
depend on the weights), 384-wide text embeddings (MiniLM's width, unit vectors around
256 topic centres: real items cluster, and an inverted-file index relies on it) and
64-wide vectors with id embeddings, as the issue's measurements before. The full artifact
(format 1) is what ``temporec train`` writes; the compact one is what ``temporec
compact`` writes (float16 item vectors, a column catalog), "index" what ``temporec
compact --index ivf`` writes (the same, with the approximate faiss index), "flat" what
``temporec compact --index flat`` writes (the exact float16 scan). The 1,000,000-item catalog
is built compact only, its item vectors drawn around the centres directly: its full
artifact (1.78 GiB on disk, 2.7 GiB resident, measured before) would take most of the
memory that this shared machine has to spare.

For each artifact: the artifact's size, the time from starting ``temporec serve`` to its
"serving on" line (the Python start of the process included: see the 10,000-item row), its
resident memory once warm, requests per second at 1 and 32 clients (histories of 20
catalog items, k = 10, exact scoring of the whole catalog) and the server's mean
milliseconds of scoring per batch (its ``score`` stage); for "index" and "flat" artifacts,
recall@10 of the index's proposals (scored exactly) against exact scoring of the same table. Then
recall@10 of the float16 table against the float32 vectors, on the 100,000-item catalog. Server and load generator
share the machine's cores (the server runs ``--threads`` torch threads).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch

import results_file
from load import RESULTS, Server, Settings, run_load
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog
from temporec.model.artifacts import Manifest, compact_artifact, load_model, save_model
from temporec.model.checksums import RACY_SECONDS
from temporec.model.item_index import CALIBRATION_HISTORIES, TARGET_RECALL, measured_recall, model_index
from temporec.model.recommender import EventBatch, SequenceRecommender

TEXT_DIM, DIM, MAX_LEN, HISTORY, K, TOPICS = 384, 64, 50, 20, 10, 256
ACTIONS = ["watch", "rate"]
INDEXES = {"index": "ivf", "flat": "flat"}  # the rows with an index: its kind
GOALS = {"exact_ms": 25.0, "artifact_gib": 0.6, "start_s": 3.0}  # at 1,000,000 items (issue 17)


@dataclasses.dataclass
class Plan:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    full_up_to: int = 100_000  # larger catalogs are built compact only
    seconds: float = 10.0
    warmup: float = 3.0
    clients: tuple[int, ...] = (1, 32)
    threads: int = 1
    recall_users: int = 500


QUICK = Plan(sizes=(10_000, 100_000), seconds=4.0, warmup=1.0, recall_users=100)


# -- the catalogs -----------------------------------------------------------------------------


def synthetic_catalog(n_items: int) -> Catalog:
    return Catalog([f"item{j}" for j in range(n_items)], [f"synthetic item number {j}" for j in range(n_items)])


def manifest(n_items: int, head_options: dict) -> Manifest:
    return Manifest(
        "video", "lstm", "local", "sentence-transformers/all-MiniLM-L6-v2", DIM, MAX_LEN, ACTIONS,
        head_options=head_options, data_name=f"synthetic-{n_items}", data_fingerprint=f"synthetic{n_items}",
        version=f"synthetic-{n_items}",
    )  # fmt: skip


def clustered(n_items: int, width: int) -> torch.Tensor:
    """Vectors around ``TOPICS`` centres, as real items cluster by genre (and as an
    inverted-file index needs: on unstructured random vectors its recall collapses)."""
    generator = torch.Generator().manual_seed(width)
    centres = torch.randn(TOPICS, width, generator=generator)
    draws = torch.Generator().manual_seed(n_items)
    return centres[torch.randint(TOPICS, (n_items,), generator=draws)] + 0.5 * torch.randn(
        n_items, width, generator=draws
    )


def untrained_model(heads: dict, n_items: int, text: torch.Tensor | None) -> SequenceRecommender:
    """An lstm model over ``n_items``: from ``text`` (n_items, TEXT_DIM), or, when None,
    with its item vectors already a float16 table (what a compact artifact holds)."""
    torch.manual_seed(n_items)
    head = heads["lstm"](DIM, MAX_LEN)
    model = SequenceRecommender(head, text if text is not None else torch.zeros(1, TEXT_DIM), n_actions=len(ACTIONS))
    if text is None:
        model.freeze_items(clustered(n_items, DIM) / DIM**0.5)
    else:
        torch.nn.init.normal_(model.item_ids.weight, std=0.005)  # corrections, small beside the text (they start at 0)
    return model.eval()


def build(root: Path, heads: dict, n_items: int, full: bool) -> dict[str, Path]:
    """The artifacts of one catalog, each in a models directory of its own."""
    catalog, popularity = synthetic_catalog(n_items), torch.rand(n_items)
    built = {}
    if full:
        text = torch.nn.functional.normalize(clustered(n_items, TEXT_DIM), dim=1)
        model = untrained_model(heads, n_items, text)
        built["full"] = save_model(
            root / f"full-{n_items}", manifest(n_items, model.head.config), model, catalog, popularity
        )
        del model, text
        built["compact"] = compact_artifact(built["full"], root / f"compact-{n_items}", heads)
        for kind in INDEXES:
            built[kind] = compact_artifact(built["full"], root / f"{kind}-{n_items}", heads, index=INDEXES[kind])
    else:
        model = untrained_model(heads, n_items, None)
        described = manifest(n_items, model.head.config)
        built["compact"] = save_model(root / f"compact-{n_items}", described, model, catalog, popularity)
        for kind in INDEXES:
            index = model_index(model, INDEXES[kind])
            described = manifest(n_items, model.head.config)
            built[kind] = save_model(root / f"{kind}-{n_items}", described, model, catalog, popularity, index)
    return built


def size_gib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30


# -- serving ----------------------------------------------------------------------------------


def requests_for(n_items: int, count: int = 2000) -> list:
    from temporec.v1 import recommender_pb2 as pb

    rng = random.Random(n_items)
    requests = []
    for _ in range(count):
        history = [
            pb.Event(item_id=f"item{rng.randrange(n_items)}", action=rng.choice(ACTIONS), timestamp_ms=1_700_000_000_000 + 60_000 * t)
            for t in range(HISTORY)
        ]  # fmt: skip
        requests.append(pb.RecommendRequest(domain="video", history=history, k=K))
    return requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(artifact: Path, plan: Plan) -> tuple[Server, float]:
    """``temporec serve`` on the artifact's directory, and the seconds until it served."""
    started = time.monotonic()
    options = ("--threads", str(plan.threads), "--no-warm-encoders")  # no request here embeds a text
    server = Server(artifact.parent, *options, metrics_port=free_port())
    return server, time.monotonic() - started


def serve(artifact: Path, n_items: int, plan: Plan) -> dict:
    """Start ``temporec serve`` on the artifact twice (the first start hashes its files,
    the second finds their checksums cached), then load the second and measure."""
    time.sleep(RACY_SECONDS)  # files as old as a deployed model's: their checksums can be cached
    first, first_start = start(artifact, plan)
    first.stop()
    server, second_start = start(artifact, plan)
    row = {"first_start_s": first_start, "start_s": second_start}
    requests = requests_for(n_items)
    try:
        for clients in plan.clients:
            settings = dataclasses.replace(Settings(), clients=clients, channels=min(clients, 4))
            asyncio.run(run_load(server.target, requests, settings, plan.warmup, limit=sys.maxsize))
            tally = asyncio.run(run_load(server.target, requests, settings, plan.seconds, limit=sys.maxsize))
            if tally.errors:
                raise SystemExit(f"{tally.errors} requests failed: {dict(tally.codes)}")
            row[f"rps_{clients}"] = tally.requests / tally.seconds
            row[f"p50_ms_{clients}"] = 1000 * sorted(tally.latencies)[len(tally.latencies) // 2]
        row["rss_gib"] = server.memory_mib()[0] / 1024
        row["score_ms"] = server.stage_means_ms().get("score", float("nan"))
    finally:
        server.stop()
    return row


# -- recall of the float16 table -------------------------------------------------------------


def recall_at_k(full: Path, compact: Path, heads: dict, users: int) -> float:
    """Recall@10 of the compact artifact's ranking against the full one's, for random
    histories of 20 catalog items."""
    exact, approximate = load_model(full, heads), load_model(compact, heads)
    events = random_histories(exact.model.n_items, users)
    found = 0
    with torch.inference_mode():
        for first in range(0, users, 50):
            batch = events.map(lambda t, rows=slice(first, first + 50): t[rows])
            top = [loaded.model.scores(batch).topk(K, dim=1).indices for loaded in (exact, approximate)]
            found += sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(*top))
    return found / (K * users)


def index_recall(indexed: Path, heads: dict, users: int) -> tuple[float, dict]:
    """Recall@10 of the index's proposals, scored exactly, against exact scoring of the
    whole catalog (the same float16 table), for random histories of 20 catalog items; and
    the index's settings (Manifest.item_index)."""
    loaded = load_model(indexed, heads)
    events = random_histories(loaded.model.n_items, users)
    with torch.inference_mode():
        vectors = loaded.model.candidate_vectors()
        states = loaded.model.user_states(events)
        recall = measured_recall(loaded.index, states, vectors)
    return recall, loaded.manifest.item_index


def random_histories(n_items: int, users: int) -> EventBatch:
    rng = random.Random(1)
    histories = [[rng.randrange(n_items) for _ in range(HISTORY)] for _ in range(users)]
    actions = [[rng.randrange(len(ACTIONS)) for _ in range(HISTORY)] for _ in range(users)]
    return EventBatch.from_histories(histories, actions, [[60.0 * t for t in range(HISTORY)]] * users, MAX_LEN)


# -- the run and its report -------------------------------------------------------------------


def measure(workdir: Path, plan: Plan) -> tuple[list[dict], float | None]:
    heads = load_registry().heads
    rows, recall = [], None
    for n_items in plan.sizes:
        built = build(workdir, heads, n_items, full=n_items <= plan.full_up_to)
        for kind, artifact in built.items():
            row = {"items": n_items, "artifact": kind, "gib": size_gib(artifact), **serve(artifact, n_items, plan)}
            row["recall"], row["index"] = (
                index_recall(artifact, heads, plan.recall_users) if kind in INDEXES else (None, {})
            )
            print(row, file=sys.stderr)
            rows.append(row)
        if "full" in built and n_items == max(s for s in plan.sizes if s <= plan.full_up_to):
            recall = recall_at_k(built["full"], built["compact"], heads, plan.recall_users)
        for artifact in built.values():
            shutil.rmtree(artifact.parent, ignore_errors=True)
    return rows, recall


def report(plan: Plan, rows: list[dict], recall: float | None, loads: tuple[str, str]) -> str:
    clients = plan.clients
    head = (
        "| items | artifact | on disk (GiB) | first start (s) | start (s) | resident (GiB) | "
        + " | ".join(f"req/s at {c}" for c in clients)
        + " | p50 at 1 (ms) | scoring per batch (ms) | recall@10 |"
    )
    lines = [head, "|" + " --- |" * (9 + len(clients))]
    for row in rows:
        rates = " | ".join(f"{row[f'rps_{c}']:.0f}" for c in clients)
        lines.append(
            f"| {row['items']:,} | {row['artifact']} | {row['gib']:.3f} | {row['first_start_s']:.1f} | "
            f"{row['start_s']:.1f} | {row['rss_gib']:.2f} | "
            f"{rates} | {row[f'p50_ms_{clients[0]}']:.1f} | {row['score_ms']:.1f} | " + recall_cell(row) + " |"
        )
    notes = [
        "",
        f"Synthetic catalogs (benchmarks/catalog.py's docstring): `video` + `lstm`, untrained, text {TEXT_DIM} wide, "
        f"vectors {DIM} wide; histories of {HISTORY} catalog items, k = {K}; exact scoring (one matmul and one top-k "
        f'over the whole catalog per batch, in float32) but for "index" rows (the approximate index\'s proposals scored exactly) and "flat" rows (faiss\'s float16 scan of every vector proposes, the proposals scored exactly); `temporec serve --threads {plan.threads}`, each measurement '
        f"{plan.seconds:g} s after {plan.warmup:g} s of warm-up.",
        "An index's probe (the lists searched of its lists, 4 sqrt(items)) is calibrated as it is built "
        f"(temporec.model.item_index.calibrated_probe: the fewest that find {TARGET_RECALL:g} of the exact top 10 for the "
        f"model's states after {CALIBRATION_HISTORIES} random histories); its recall@10 here is measured on "
        f"{plan.recall_users} other random histories: a held-out check of the calibration, on queries of the same kind.",
        f"Recall@10 of the float16 table against the float32 vectors: {recall:.3f}"
        if recall is not None
        else "Recall@10: not measured.",
        'Start: wall-clock from starting the process to its "serving on" line, the interpreter\'s start and imports '
        "included (the 10,000-item rows show that part); the first start hashes the artifact's files, the next finds "
        "their checksums cached (temporec.model.checksums). Goals at 1,000,000 items (issue 17): exact scoring "
        f"(compact or flat) <= {GOALS['exact_ms']:g} ms a request at 1 client (the p50 column), artifact <= {GOALS['artifact_gib']:g} GiB, start <= {GOALS['start_s']:g} s; "
        "with the index >= 500 req/s at 32 clients and recall@10 >= 0.98.",
        f"The machine was shared with other work during the run (2 cores): load average before {loads[0]}, "
        f"after {loads[1]}. Timings on it are upper bounds.",
    ]
    return "\n".join(lines + notes) + "\n"


def recall_cell(row: dict) -> str:
    if row["recall"] is None:
        return "exact"
    probe = row["index"].get("probe")
    return f"{row['recall']:.3f} " + (f"(probe {probe:,})" if probe else "(flat: every vector)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 items, printed only")
    parser.add_argument("--seconds", type=float, help=f"per measurement (default {Plan.seconds:g})")
    parser.add_argument("--threads", type=int, help=f"the server's torch threads (default {Plan.threads})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (not with --quick)")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    plan = dataclasses.replace(plan, **{k: v for k, v in vars(args).items() if k in ("seconds", "threads") and v})
    torch.set_num_threads(1)
    started, before = time.monotonic(), results_file.load_average()
    workdir = Path(tempfile.mkdtemp(prefix="temporec-catalog-"))
    os.environ["TEMPOREC_CACHE_DIR"] = str(workdir / "cache")  # the servers' checksum cache, fresh
    try:
        rows, recall = measure(workdir, plan)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    body = report(plan, rows, recall, (before, results_file.load_average()))
    print(body)
    if not args.quick:
        results_file.record(args.out, "catalog", "catalog.py", None, started, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
