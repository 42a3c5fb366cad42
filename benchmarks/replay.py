"""Replay benchmark (issue 16, part 4) and the real-time speed goals.

    .venv/bin/python benchmarks/replay.py                 # replay-taobao, then realtime-speed
    .venv/bin/python benchmarks/replay.py --only replay   # one section
    .venv/bin/python benchmarks/replay.py --models DIR    # reuse the models trained there

**replay-taobao.** Taobao's events are split by time: the first ``--train-share`` of them
(by timestamp) train an ``lstm`` and an ``ar`` model (retail defaults, ``--time-budget``
seconds each) and are bulk-loaded into the store through ``TrackStream``; the rest are
streamed into a real ``temporec serve`` (loopback, SQLite store, an experiment with one
arm per model) in global time order. Before each event of a user with a stored history,
``Recommend(user_id, k=10)`` is asked, and whether the event's item is in the top 10 and
its reciprocal rank are recorded for the arm that answered; then the event is tracked.
Tracks are batched: pending events are sent before the next ``Recommend`` of a user who
has one pending, so each user's recommend-before-track order holds. Popularity is not an
arm: an experiment's arm selects a loaded model (head, version, encoder, options), and
there is no popularity model to load.

**realtime-speed.** The issue's goals: ``TrackStream`` ingestion (messages of
``--batch`` events) into SQLite and into Redis (when ``redis-server`` is on PATH), and
``Recommend`` by user id with a stored history against the same request carrying that
history itself (p50 each, interleaved, no experiment).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import results_file
from load import Server
from temporec.triton.local_server import free_port
from temporec_client import Event, TemporecClient, TrackedEvent

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DOMAIN = "retail"
EXPERIMENT = "replay"
HEADS = ("lstm", "ar")
WEEK = 7 * 86400

log = logging.getLogger("benchmarks.replay")


# -- the data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One event of the time-ordered data set."""

    user_id: str
    item_id: str
    action: str
    timestamp: float
    index: int  # its position in the user's sequence: with the user, a unique event id

    @property
    def event_id(self) -> str:
        return f"e{self.index}"

    def tracked(self, shift: float = 0.0) -> TrackedEvent:
        return TrackedEvent(self.user_id, self.event_id, self.item_id, self.action, self.timestamp + shift)


def time_ordered(sequences: dict[str, list]) -> list[Step]:
    """Every event of every user, in global time order (ties: by user, then position)."""
    steps = [
        Step(user, e.item_id, e.action, float(e.timestamp), i)
        for user, events in sequences.items()
        for i, e in enumerate(events)
    ]
    return sorted(steps, key=lambda s: (s.timestamp, s.user_id, s.index))


def time_split(steps: list[Step], share: float) -> tuple[list[Step], list[Step]]:
    """The first ``share`` of the time-ordered ``steps`` and the rest; events at the cut's
    timestamp all go to the first part, so that no later part is older than it."""
    if not steps:
        return [], []
    cut = steps[min(len(steps) - 1, max(0, math.ceil(share * len(steps)) - 1))].timestamp
    first = [s for s in steps if s.timestamp <= cut]
    return first, steps[len(first) :]


def replay_order(steps: list[Step], known: set[str], batch: int = 1000):
    """What the replay sends, in order: ``("recommend", step)`` before each step of a user
    in ``known`` (who has a history), and ``("track", [steps])`` batches; a user's pending
    events are tracked before their next ``recommend``, so each recommendation sees every
    earlier event of its user and none of the later ones. ``known`` grows as users are seen."""
    pending: list[Step] = []
    waiting: set[str] = set()
    for step in steps:
        if step.user_id in known:
            if step.user_id in waiting:
                yield "track", pending
                pending, waiting = [], set()
            yield "recommend", step
        pending.append(step)
        waiting.add(step.user_id)
        known.add(step.user_id)
        if len(pending) >= batch:
            yield "track", pending
            pending, waiting = [], set()
    if pending:
        yield "track", pending


# -- models -----------------------------------------------------------------------------


def train_models(train_steps: list[Step], dataset, models: Path, budget: float, threads: int) -> dict:
    """An ``lstm`` and an ``ar`` model on ``train_steps`` (each user's events before the
    cut), unless ``models`` has them; returns each head's manifest (the newest)."""
    import torch

    from temporec.contract.registry import load_registry
    from temporec.contract.types import Dataset
    from temporec.contract.types import Event as DataEvent
    from temporec.model.artifacts import find_artifacts, read_manifest
    from temporec.training import TrainConfig, train

    found = {}
    if models.is_dir():
        for path in find_artifacts(models):
            manifest = read_manifest(path)
            if manifest.domain == DOMAIN and manifest.version > getattr(found.get(manifest.head), "version", ""):
                found[manifest.head] = manifest
    missing = [h for h in HEADS if h not in found]
    if not missing:
        return found
    torch.set_num_threads(threads)
    registry = load_registry()
    domain_cls = registry.domains[DOMAIN]
    domain = domain_cls()
    sequences: dict[str, list] = defaultdict(list)
    for s in train_steps:
        sequences[s.user_id].append(DataEvent(s.item_id, s.action, s.timestamp))
    sequences = {u: sorted(e, key=lambda e: e.timestamp) for u, e in sequences.items() if len(e) >= 3}
    data = Dataset(dataset.name + "-before-cut", dataset.catalog, sequences)
    base = TrainConfig(device="cpu", time_budget_s=budget, seed=0, dim=64, max_len=50, batch_size=32, lr=2e-3)
    base = replace(base, epochs=40, patience=3)
    config = domain.training_config(data, base)
    for head in missing:
        started = time.monotonic()
        path = train(
            data,
            registry.heads[head],
            torch.zeros(len(data.catalog), 0),
            domain=domain_cls,
            encoder_name="local",
            encoder_model_id="(none: ids and categories)",
            out_dir=models,
            config=config,
        )
        found[head] = read_manifest(path)
        log.info("trained %s in %.0f s: %s", head, time.monotonic() - started, path)
    return found


# -- servers ----------------------------------------------------------------------------


class Redis:
    """A ``redis-server`` on a free loopback port (append-only, ``appendfsync always``, as
    the tests run it), stopped by its pid."""

    def __init__(self, directory: Path):
        self.port = free_port()
        command = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        for _ in range(200):
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


ATTRIBUTION_WINDOW_S = 86_400.0  # outcomes count a day of the data's time after an exposure


def write_config(path: Path, store: str, versions: dict[str, str] | None, window: float) -> Path:
    """The server's TOML: the store, and with ``versions`` an experiment of one arm per
    model (equal shares; the first head the control)."""
    lines = [f"store = {json.dumps(store)}", "[limits]", "max_k = 1000"]
    if versions:
        lines += [f"[experiments.{EXPERIMENT}]", f'domain = "{DOMAIN}"', f"attribution_window_s = {window:.0f}"]
        lines += ['exposure_clock = "events"']  # the data's time, as the replayed events carry it
        for i, head in enumerate(HEADS):
            lines += [f"[experiments.{EXPERIMENT}.arms.{head}]", f"share = {1 / len(HEADS)!r}", f'head = "{head}"']
            lines += ["control = true"] * (i == 0)
    path.write_text("\n".join(lines) + "\n")
    return path


def ingest(client: TemporecClient, steps: list[Step], batch: int, shift: float = 0.0) -> tuple[float, int]:
    """``steps`` through one ``TrackStream`` in messages of ``batch``; (events/s, stored)."""
    batches = [[s.tracked(shift) for s in steps[i : i + batch]] for i in range(0, len(steps), batch)]
    started = time.perf_counter()
    tracked = client.track_stream(batches, timeout=600)
    return len(steps) / (time.perf_counter() - started), tracked.stored


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def load() -> str:
    return "load average " + results_file.load_average()


# -- replay -----------------------------------------------------------------------------


def bootstrap(per_user: dict[str, list[float]], rounds: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """The mean over events and its 95% interval, resampling users (their events together)."""
    users = list(per_user)
    total = sum(len(v) for v in per_user.values())
    mean = sum(map(sum, per_user.values())) / total if total else math.nan
    rng = random.Random(seed)
    sums = [(sum(v), len(v)) for v in per_user.values()]
    means = []
    for _ in range(rounds if users else 0):
        picked = [sums[rng.randrange(len(users))] for _ in users]
        n = sum(c for _, c in picked)
        means.append(sum(s for s, _ in picked) / n if n else 0.0)
    return mean, percentile(means, 0.025), percentile(means, 0.975)


def replay_section(args, workdir: Path, steps: list[Step], dataset, manifests: dict) -> str:
    head_part, rest = time_split(steps, args.train_share)
    replayed = rest[: args.events]
    shift = math.ceil((time.time() - replayed[0].timestamp) / WEEK) * WEEK if replayed else 0.0
    span = (replayed[-1].timestamp - replayed[0].timestamp) if replayed else 0.0
    window = ATTRIBUTION_WINDOW_S
    versions = {head: manifest.version for head, manifest in manifests.items()}
    config = write_config(workdir / "replay.toml", f"sqlite://{workdir}/replay.db", versions, window)
    before = load()
    server = Server(args.models, "--config", str(config), "--store", f"sqlite://{workdir}/replay.db")
    hits: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    ranks: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    latencies: list[float] = []
    tracked_calls = tracked_events = 0
    try:
        with TemporecClient(server.target) as client:
            rate, stored = ingest(client, head_part, args.batch, shift)
            log.info("bulk-loaded %d events at %.0f events/s", stored, rate)
            known = {s.user_id for s in head_part}
            started = time.perf_counter()
            for kind, what in replay_order(replayed, known, args.batch):
                if kind == "track":
                    client.track([s.tracked(shift) for s in what])
                    tracked_calls, tracked_events = tracked_calls + 1, tracked_events + len(what)
                    continue
                t0 = time.perf_counter()
                answer = client.recommend(DOMAIN, user_id=what.user_id, k=10)
                latencies.append(1000 * (time.perf_counter() - t0))
                shown = answer.item_ids
                rank = shown.index(what.item_id) + 1 if what.item_id in shown else 0
                hits[answer.arm][what.user_id].append(float(rank > 0))
                ranks[answer.arm][what.user_id].append(1 / rank if rank else 0.0)
            replay_s = time.perf_counter() - started
    finally:
        server.stop()
    after = load()
    reported = subprocess.run(
        [sys.executable, "-m", "temporec", "experiments", "report", EXPERIMENT, "--config", str(config)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("TEMPOREC_PLUGINS", "TEMPOREC_CONFIG")},
    )
    rows, online = [], {}
    for arm in HEADS:
        n_users, n_events = len(hits[arm]), sum(map(len, hits[arm].values()))
        hr, hr_lo, hr_hi = bootstrap(hits[arm])
        mrr, mrr_lo, mrr_hi = bootstrap(ranks[arm])
        online[arm] = (hr, hr_lo, hr_hi)
        rows.append(
            f"| {arm}{' (control)' * (arm == HEADS[0])} | {versions[arm]} | {n_users} | {n_events} | "
            f"{hr:.4f} [{hr_lo:.4f}, {hr_hi:.4f}] | {mrr:.4f} [{mrr_lo:.4f}, {mrr_hi:.4f}] |"
        )
    first = time.strftime("%Y-%m-%d %H:%M", time.gmtime(replayed[0].timestamp)) if replayed else "-"
    return f"""Data: `taobao-userbehavior` ({len(dataset.sequences)} users, {len(steps)} events). Split by time: the first \
{args.train_share:.0%} of the events ({len(head_part)}, up to {time.strftime("%Y-%m-%d %H:%M", time.gmtime(head_part[-1].timestamp))} \
UTC) trained the models ({", ".join(HEADS)}; retail defaults, {args.time_budget:.0f} s budget each) and were bulk-loaded into the \
store (`TrackStream`, messages of {args.batch}: {rate:,.0f} events/s); then the next {len(replayed)} events (from {first} UTC, \
{span / 3600:.1f} h of data time) were replayed in time order into `temporec serve` (SQLite store, experiment `{EXPERIMENT}`: \
{", ".join(HEADS)}, equal shares, sticky by user): `Recommend(user_id, k=10)` before each event of a user with a history \
({len(latencies)} requests), the events tracked in {tracked_calls} `Track` calls (a batch is sent when a user with a pending \
event asks next, or at {args.batch}). Timestamps are shifted by whole weeks (gaps and weekdays kept) to now. Popularity is no arm: an arm selects a loaded model (head, version, encoder, options) and there is no popularity model to load; it stands in the offline table below. The replay runs on SQLite; the Redis store is measured in the realtime-speed section.

Online next-event metrics per arm, over the events recommended for (every action; k=10, the retail rules of the server \
applied; MRR counts ranks within the top 10). 95% intervals: bootstrap over users (1,000 resamples; a user's events together).

| arm | model version | users | events | HR@10 [95%] | MRR@10 [95%] |
| --- | --- | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

`Recommend` by user id while ingesting (one client, Recommend and Track interleaved, each Recommend also logging its \
exposure: one more SQLite sync): p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms; the \
replay took {replay_s:.0f} s ({len(replayed) / replay_s:.0f} events/s with their recommendations).

`temporec experiments report {EXPERIMENT} --config replay.toml` (exit {reported.returncode}):

```
{(reported.stdout + reported.stderr).strip()}
```

The experiment stamps exposures with the time of the last event each answer read (`exposure_clock = "events"`), \
the data's time as the replayed events carry it, so that an exposure falls between the user's events as it did live, \
although the replay squeezes {span / 3600:.1f} h into minutes; an outcome is a cart or purchase of a shown item within \
{window / 3600:.0f} h of data time after the exposure. The online HR@10 and MRR above count the very next event only.

{offline(manifests, online)}

Machine load: {before} before, {after} after (2 cores shared with other work)."""


def offline(manifests: dict, online: dict[str, tuple[float, float, float]]) -> str:
    """The models' offline metrics (their training's leave-one-out test, on the part before
    the cut) beside the replay's, and whether the offline winner wins the replay."""
    rows = [
        f"| {head} | {manifests[head].metrics['test.hr@10']:.4f} | {manifests[head].metrics['test.mrr']:.4f} | "
        f"{online[head][0]:.4f} |"
        for head in HEADS
    ]
    first = next(iter(manifests.values())).metrics
    rows.append(
        f"| popularity (not an arm) | {first['popularity.test.hr@10']:.4f} | {first['popularity.test.mrr']:.4f} | - |"
    )
    best_offline = max(manifests, key=lambda h: manifests[h].metrics["test.hr@10"])
    best_online = max(online, key=lambda h: online[h][0])
    a, b = sorted(online.values(), reverse=True)[:2]
    separated = a[1] > b[2]
    verdict = (
        f"The offline winner (`{best_offline}`, test HR@10) {'wins' if best_offline == best_online else 'does NOT win'} "
        f"the replay (online HR@10: `{best_online}` ahead"
        + (", the intervals apart)." if separated else ", but the 95% intervals overlap: not a clear win).")
    )
    return (
        "Offline (each model's training: leave-one-out on the part before the cut, the last event of each user the "
        "test, ranked against the whole catalog) against online:\n\n"
        "| model | offline test HR@10 | offline test MRR | online HR@10 |\n| --- | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + "\n\n"
        + verdict
    )


# -- speed ------------------------------------------------------------------------------


def speed_section(args, workdir: Path, steps: list[Step]) -> str:
    stores = {"sqlite": lambda: f"sqlite://{workdir}/speed.db"}
    if shutil.which("redis-server"):
        stores["redis"] = None
    else:
        log.warning("redis-server is not on PATH: the Redis measurement is skipped")
    ingested, recommend = {}, {}
    before = load()
    rng = random.Random(0)
    for name in stores:
        redis = Redis(workdir) if name == "redis" else None
        url = redis.url if redis else stores[name]()
        config = write_config(workdir / f"speed-{name}.toml", url, None, 0)
        server = Server(args.models, "--config", str(config), "--store", url)
        try:
            with TemporecClient(server.target) as client:
                ingested[name] = ingest(client, steps, args.batch)
                users = rng.sample(sorted({s.user_id for s in steps}), min(args.users, len({s.user_id for s in steps})))
                stored, explicit = [], []
                for i, user in enumerate(users * 2):
                    history = [Event(e.item_id, e.action, e.timestamp) for e in client.get_history(user, limit=50)]
                    calls = [("store", {"user_id": user}), ("request", {"history": history})]
                    for kind, fields in calls if i % 2 else calls[::-1]:
                        t0 = time.perf_counter()
                        answer = client.recommend(DOMAIN, k=10, **fields)
                        took = 1000 * (time.perf_counter() - t0)
                        assert answer.history_source == kind, answer.history_source
                        if i >= len(users) // 4:  # the first quarter warms up
                            (stored if kind == "store" else explicit).append(took)
                recommend[name] = (statistics.median(stored), statistics.median(explicit), len(stored))
        finally:
            server.stop()
            if redis:
                redis.stop()
    after = load()
    rows = [
        f"| {name} | {ingested[name][0]:,.0f} | {ingested[name][1]} | {recommend[name][0]:.2f} | "
        f"{recommend[name][1]:.2f} | {recommend[name][0] / recommend[name][1]:.2f}× | {recommend[name][2]} |"
        for name in stores
    ]
    missing = "" if "redis" in stores else " (redis-server is not on PATH here: no Redis row)"
    return f"""The issue's goals: `TrackStream` ingestion ≥ 20,000 events/s into SQLite and into Redis; `Recommend` by \
user id with a stored history within 1.2× the p50 of the same request carrying its history{missing}.

Ingestion: every event of `taobao-userbehavior` ({len(steps)}, {len({s.user_id for s in steps})} users) in one \
`TrackStream` of messages of {args.batch} (Python client, server and store on this machine; SQLite `synchronous=FULL`, \
Redis `appendonly yes`, `appendfsync always`). Then, per store, {args.users} users sampled, each asked twice: \
`Recommend(user_id, k=10)` (the store's history, `max_len` 50) and `Recommend(history=..., k=10)` with the same \
events (up to 50, read by `GetHistory` beforehand), in alternating order; p50 over the last three quarters of the calls \
(no experiment: no exposure writes).

| store | events/s | stored | p50 by user id (ms) | p50 with the history (ms) | ratio | calls each |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Machine load: {before} before, {after} after (2 cores shared with other work: the client, the server and the store \
compete for them)."""


# -- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("replay", "speed"), help="one section only")
    parser.add_argument("--data", type=Path, default=DATA / "taobao-userbehavior", help="the Taobao folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "replay", help="trained (or reused) models")
    parser.add_argument("--time-budget", type=float, default=90.0, help="training seconds per model (default 90)")
    parser.add_argument("--train-share", type=float, default=0.8, help="events (by time) trained on (default 0.8)")
    parser.add_argument("--events", type=int, default=10000, help="events replayed (default 10000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per Track/TrackStream message (default 1000)")
    parser.add_argument("--users", type=int, default=200, help="users in the latency comparison (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.data.is_dir():
        print(f"no data at {args.data}: nothing to replay", file=sys.stderr)
        return 1
    from temporec.contract.registry import load_registry

    dataset = load_registry().domains[DOMAIN]().load_dataset(str(args.data))
    steps = time_ordered(dataset.sequences)
    shown = argv if argv is not None else sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="temporec-replay-") as scratch:
        workdir = Path(scratch)
        if args.only in (None, "replay"):
            started = time.monotonic()
            versions = train_models(time_split(steps, args.train_share)[0], dataset, args.models, args.time_budget, 2)
            body = replay_section(args, workdir, steps, dataset, versions)
            results_file.record(args.out, "replay-taobao", "replay.py", shown, started, body)
            log.info("replay-taobao written to %s", args.out)
        if args.only in (None, "speed"):
            started = time.monotonic()
            if not any(args.models.glob("*/manifest.json")):
                train_models(time_split(steps, args.train_share)[0], dataset, args.models, args.time_budget, 2)
            body = speed_section(args, workdir, steps)
            results_file.record(args.out, "realtime-speed", "replay.py", shown, started, body)
            log.info("realtime-speed written to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
