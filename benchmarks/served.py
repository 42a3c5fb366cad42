"""The served path against the in-process limit (issue 17), side by side in one run.

    .venv/bin/python benchmarks/served.py           # about 8 minutes: writes the "served"
                                                    # section of benchmarks/RESULTS.md
    .venv/bin/python benchmarks/served.py --quick   # a smoke test: printed only
    .venv/bin/python benchmarks/served.py --workers 2   # about 8 minutes: one worker against
                                                    # two, the "workers" section

Trains `video` models (`lstm` and `ar`) on the first ``--users`` users of MovieLens-1M (the
synthetic set of scripts/serve_test_model.py without ../shared), then for each head and
each number of concurrent clients measures, alternately and ``--repeats`` times:
- in-process: a process of its own awaits ``RecommenderService.recommend`` for queries
  translated from the requests beforehand: the service with no gRPC, no protobuf, no
  client. This is the limit the server can approach.
- served: ``temporec serve`` in its own process, called by grpc.aio stubs from this one.
Requests are catalog-only (real histories of at most 50 events, no texts to embed, no cold
starts), as in the issue's measurements. Both processes run torch with
``--threads`` intra-op threads (OMP_NUM_THREADS). The load generator shares the 2 cores
with the server, as any loopback benchmark on this machine does: its CPU is in the served
numbers, not in the in-process ones. So each row also gives the CPU milliseconds per
request of the process that serves (the service's own in-process, the server's served),
which the load generator's share of the cores does not move.

With ``--workers N`` the run compares ``temporec serve`` with one worker and with N
(``--workers N``: N processes on one port) instead, alternately, for ``lstm`` at 8 and 32
clients, each client on its own TCP connection: the kernel spreads connections, not calls,
over the workers. The machine's load average before and after goes into the section.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_file
from load import REQUEST_TIMEOUT, RESULTS, Server, Settings, build_requests, run_load, train, write_data

HEADS = ("lstm", "ar")
CLIENTS = (1, 8, 32)
GOAL = 0.8  # served / in-process, the goal at every client count
WORKERS_GOAL = 1.5  # N workers / one worker on N cores (issue 17)


@dataclasses.dataclass
class Plan:
    users: int = 1000
    epochs: int = 1
    seconds: float = 15.0
    warmup: float = 3.0
    repeats: int = 2
    threads: int = 1
    clients: tuple[int, ...] = CLIENTS
    heads: tuple[str, ...] = HEADS


QUICK = Plan(users=200, seconds=3.0, warmup=1.0, repeats=1, clients=(1, 8), heads=("lstm",))
#: --workers: one client can use one worker only, so from 8 clients.
WORKERS = dataclasses.replace(Plan(), clients=(8, 32), heads=("lstm",))
WORKERS_QUICK = dataclasses.replace(QUICK, clients=(8,))


def catalog_only(requests: list, head: str) -> list:
    """The requests with a history of catalog items only, addressed to ``head``."""
    kept = [r for r in requests if r.history and not any(e.text for e in r.history)]
    for request in kept:
        request.head = head
    return kept


# -- in-process: a child process that awaits the service directly ----------------------------


def in_process_main(models: str, requests_file: str, clients: int, seconds: float, warmup: float) -> None:
    """The child: build the service as ``temporec serve`` would, then ``clients`` tasks
    await ``recommend`` for ``warmup`` + ``seconds``; prints {"rate": requests/s, "cpu_ms":
    this process's CPU milliseconds per request}."""
    from temporec.grpc import translate
    from temporec.serving import build_service
    from temporec.serving.config import load_config

    queries = [translate.query_from_proto(request) for request in decode_requests(Path(requests_file).read_bytes())]
    config = load_config(env={}, overrides={"models_dir": models, "device": "cpu"})

    async def run() -> dict:
        service = build_service(config)
        await service.start()
        try:
            await drive(service, queries, clients, warmup)
            cpu = time.process_time()
            done, elapsed = await drive(service, queries, clients, seconds)
            return {"rate": done / elapsed, "cpu_ms": 1000 * (time.process_time() - cpu) / max(done, 1)}
        finally:
            await service.close()

    print(json.dumps(asyncio.run(run())), flush=True)


async def drive(service, queries: list, clients: int, seconds: float) -> tuple[int, float]:
    """The requests ``clients`` concurrent callers of ``service.recommend`` completed, and
    the seconds they took."""
    done = 0
    deadline = time.monotonic() + seconds

    async def caller(number: int) -> None:
        nonlocal done
        rng = random.Random(number)
        while time.monotonic() < deadline:
            await service.recommend(rng.choice(queries), timeout=REQUEST_TIMEOUT)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(n) for n in range(clients)))
    return done, time.monotonic() - started


def encode_requests(requests: list) -> bytes:
    """Length-prefixed serialized requests: how the parent hands them to the child."""
    return b"".join(len(data).to_bytes(4, "little") + data for data in (r.SerializeToString() for r in requests))


def decode_requests(raw: bytes) -> list:
    from temporec.v1 import recommender_pb2 as pb

    requests, at = [], 0
    while at < len(raw):
        size = int.from_bytes(raw[at : at + 4], "little")
        requests.append(pb.RecommendRequest.FromString(raw[at + 4 : at + 4 + size]))
        at += 4 + size
    return requests


def in_process_rate(models: Path, requests_file: Path, clients: int, plan: Plan, env: dict) -> tuple[float, float]:
    """(requests/s, CPU ms per request) of the service in a process of its own."""
    command = [sys.executable, __file__, "--child", str(models), str(requests_file), str(clients)]
    command += [str(plan.seconds), str(plan.warmup)]
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return measured["rate"], measured["cpu_ms"]


# -- served -------------------------------------------------------------------------------------


def served_rates(models: Path, requests: list, clients: int, plan: Plan, env: dict) -> tuple[float, float]:
    """(requests/s, the server's CPU ms per request) of ``temporec serve`` called over gRPC."""
    os.environ["OMP_NUM_THREADS"] = env["OMP_NUM_THREADS"]  # the server inherits the torch threads setting
    server = Server(models)
    try:
        settings = dataclasses.replace(Settings(), clients=clients, channels=min(clients, 4))
        asyncio.run(run_load(server.target, requests, settings, plan.warmup, limit=sys.maxsize))
        cpu = server.cpu_seconds()
        tally = asyncio.run(run_load(server.target, requests, settings, plan.seconds, limit=sys.maxsize))
        if tally.errors:
            raise SystemExit(f"{tally.errors} served requests failed: {dict(tally.codes)}")
        return tally.requests / tally.seconds, 1000 * (server.cpu_seconds() - cpu) / max(tally.requests, 1)
    finally:
        server.stop()


def served_by_clients(models: Path, requests: list, plan: Plan, env: dict, workers: int) -> dict[int, tuple]:
    """(requests/s, cores the load generator used) at each of ``plan.clients`` against one
    ``temporec serve --workers workers``, each client on its own connection."""
    os.environ["OMP_NUM_THREADS"] = env["OMP_NUM_THREADS"]
    server = Server(models, "--workers", str(workers), "--threads", str(plan.threads))
    try:
        rates = {}
        for clients in plan.clients:
            settings = dataclasses.replace(Settings(), clients=clients, channels=clients)
            for seconds in (plan.warmup, plan.seconds):
                cpu = time.process_time()
                tally = asyncio.run(
                    run_load(server.target, requests, settings, seconds, limit=sys.maxsize, own_connections=True)
                )
                if tally.errors:
                    raise SystemExit(f"{tally.errors} served requests failed: {dict(tally.codes)}")
            rates[clients] = (tally.requests / tally.seconds, (time.process_time() - cpu) / tally.seconds)
        return rates
    finally:
        server.stop()


# -- the run and its report -------------------------------------------------------------------


def prepare(workdir: Path, plan: Plan) -> tuple[str, list, dict[str, str]]:
    """The data, a model per head, every request, and the servers' environment."""
    data = workdir / "data"
    described = write_data(data, plan.users)
    settings = dataclasses.replace(Settings(), epochs=plan.epochs)
    for head in plan.heads:
        train(data, workdir / "models", settings, head)
    unset = ("TEMPOREC_PLUGINS", "TEMPOREC_CONFIG")  # the installed plugins, no config file: as Server runs
    env = {**{k: v for k, v in os.environ.items() if k not in unset}, "OMP_NUM_THREADS": str(plan.threads)}
    return described, build_requests(data, settings), env


def measure(workdir: Path, plan: Plan) -> tuple[str, list[dict]]:
    described, all_requests, env = prepare(workdir, plan)
    rows = []
    for head in plan.heads:
        requests = catalog_only(list(all_requests), head)
        requests_file = workdir / f"requests-{head}.bin"
        requests_file.write_bytes(encode_requests(requests))
        for clients in plan.clients:
            row = {"head": head, "clients": clients, "inside": [], "served": [], "inside_cpu": [], "served_cpu": []}
            for _ in range(plan.repeats):  # alternated, so that drifts in the load hit both
                for side, (rate, cpu_ms) in (
                    ("inside", in_process_rate(workdir / "models", requests_file, clients, plan, env)),
                    ("served", served_rates(workdir / "models", requests, clients, plan, env)),
                ):
                    row[side].append(rate)
                    row[f"{side}_cpu"].append(cpu_ms)
                print(
                    f"{head} {clients} clients: in-process {row['inside'][-1]:.0f}/s, served {row['served'][-1]:.0f}/s",
                    file=sys.stderr,
                )
            rows.append(row)
    return described, rows


def measure_workers(workdir: Path, plan: Plan, workers: int) -> tuple[str, list[dict]]:
    """One worker against ``workers``, alternately, ``plan.repeats`` times per head."""
    described, all_requests, env = prepare(workdir, plan)
    rows = []
    for head in plan.heads:
        requests = catalog_only(list(all_requests), head)
        one = {clients: [] for clients in plan.clients}
        many = {clients: [] for clients in plan.clients}
        for _ in range(plan.repeats):
            for count, rates in ((1, one), (workers, many)):
                for clients, (rate, cores) in served_by_clients(workdir / "models", requests, plan, env, count).items():
                    rates[clients].append((rate, cores))
                    print(f"{head} {clients} clients, {count} worker(s): {rate:.0f}/s", file=sys.stderr)
        rows += [{"head": head, "clients": c, "one": one[c], "many": many[c]} for c in plan.clients]
    return described, rows


def report_workers(plan: Plan, workers: int, described: str, rows: list[dict], loads: tuple[str, str]) -> str:
    lines = [
        f"Models: `video`, {plan.epochs} epoch(s) on {described}; catalog-only requests (real histories,",
        f"at most 50 events, k = 10). `temporec serve` with 1 worker and with `--workers {workers}`, alternately,",
        f"{plan.repeats} time(s), {plan.seconds:g} s after {plan.warmup:g} s of warm-up at each client count; every",
        f"client on its own TCP connection; torch threads {plan.threads} per process. The median of the repetitions is",
        "shown, the range in brackets. The load generator shares the cores with the server: its own CPU,",
        f"in cores, is the last column (with {workers} workers). Other work shared the machine meanwhile",
        "when the load averages exceed the cores: then the ranges are wide and the ratios rough.",
        "",
        f"Load average (1, 5, 15 min) before: {loads[0]}; after: {loads[1]}.",
        "",
        f"| head | clients | 1 worker req/s | {workers} workers req/s | {workers} / 1 | goal >= {WORKERS_GOAL} | load generator |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        one, many = ([rate for rate, _ in row[side]] for side in ("one", "many"))
        ratio = statistics.median(many) / statistics.median(one)
        cores = statistics.median(cores for _, cores in row["many"])
        lines.append(
            f"| {row['head']} | {row['clients']} | {statistics.median(one):,.0f} {spread(one)} | "
            f"{statistics.median(many):,.0f} {spread(many)} | {ratio:.2f} | "
            f"{'met' if ratio >= WORKERS_GOAL else 'not met'} | {cores:.2f} |"
        )
    return "\n".join(lines) + "\n"


def report(plan: Plan, described: str, rows: list[dict]) -> str:
    lines = [
        f"Models: `video`, {plan.epochs} epoch(s) on {described}; catalog-only requests (real histories,",
        f"at most 50 events, k = 10). {plan.repeats} alternating repetition(s) of {plan.seconds:g} s after",
        f"{plan.warmup:g} s of warm-up; torch intra-op threads {plan.threads} in both processes. The median of the",
        "repetitions is shown, the range in brackets. The load generator shares the two cores with the server,",
        "and other work ran on the machine meanwhile: only the ratios within a row hold. CPU per request:",
        "the service's process in-process, the server's process served (what the load generator spends is",
        "in neither), the median of the repetitions.",
        "",
        "| head | clients | in-process req/s | served req/s | served / in-process | goal >= 0.8 "
        "| CPU ms/request in-process | served |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        inside, served = statistics.median(row["inside"]), statistics.median(row["served"])
        ratio = served / inside
        lines.append(
            f"| {row['head']} | {row['clients']} | {inside:,.0f} {spread(row['inside'])} | "
            f"{served:,.0f} {spread(row['served'])} | {ratio:.2f} | {'met' if ratio >= GOAL else 'not met'} "
            f"| {statistics.median(row['inside_cpu']):.2f} | {statistics.median(row['served_cpu']):.2f} |"
        )
    return "\n".join(lines) + "\n"


def spread(values: list[float]) -> str:
    return f"[{min(values):,.0f}-{max(values):,.0f}]" if len(values) > 1 else ""


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        models, requests_file, clients, seconds, warmup = sys.argv[2:7]
        in_process_main(models, requests_file, int(clients), float(seconds), float(warmup))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test, printed only")
    parser.add_argument("--seconds", type=float, help=f"per measurement (default {Plan.seconds:g})")
    parser.add_argument("--repeats", type=int, help=f"alternating repetitions (default {Plan.repeats})")
    parser.add_argument("--threads", type=int, help=f"torch threads in both processes (default {Plan.threads})")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="compare 1 worker with N instead (the workers section)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (not with --quick)")
    args = parser.parse_args()
    if args.workers:
        plan = WORKERS_QUICK if args.quick else WORKERS
    else:
        plan = QUICK if args.quick else Plan()
    plan = dataclasses.replace(
        plan, **{k: v for k, v in vars(args).items() if k in ("seconds", "repeats", "threads") and v is not None}
    )
    started = time.monotonic()
    before = results_file.load_average()
    workdir = Path(tempfile.mkdtemp(prefix="temporec-served-"))
    try:
        if args.workers:
            described, rows = measure_workers(workdir, plan, args.workers)
        else:
            described, rows = measure(workdir, plan)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.workers:
        body, section = (
            report_workers(plan, args.workers, described, rows, (before, results_file.load_average())),
            "workers",
        )
    else:
        body, section = report(plan, described, rows), "served"
    print(body)
    if not args.quick:
        results_file.record(args.out, section, "served.py", None, started, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
