"""What the server's interceptor costs a call (issue 17 part 1), side by side in one run.

    .venv/bin/python benchmarks/pipeline.py           # about 2 minutes: writes the
                                                      # "pipeline" section of RESULTS.md
    .venv/bin/python benchmarks/pipeline.py --quick   # a smoke test: printed only

A grpc.aio server in a process of its own (pinned to one core) answers a trivial unary
method (it returns its 100-byte request) under three set-ups: no interceptor; the
server's ``CallPipeline`` as ``temporec serve`` builds it (request ids, access lines at
INFO to /dev/null, metrics); the same with the access lines off (``--log-level
warning``). 32 grpc.aio clients over 4 channels in this process (pinned to the other
core) call it as fast as it answers. The set-ups alternate, ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import grpc

import results_file
from load import RESULTS

SETUPS = ("no interceptor", "CallPipeline", "CallPipeline, no access lines")
CLIENTS, CHANNELS = 32, 4


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {core % os.cpu_count()})


def interceptors(setup: str) -> list:
    from temporec.grpc.security import call_pipeline
    from temporec.serving.config import ServerConfig
    from temporec.serving.metrics import ServerMetrics

    if setup == "no interceptor":
        return []
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115 (the process's life)
    if setup.endswith("no access lines"):
        logging.getLogger("temporec.access").setLevel(logging.WARNING)
    return [call_pipeline(ServerConfig(), recorder=ServerMetrics(frozenset(), frozenset(), lambda: 0))]


def serve(setup: str, ports: multiprocessing.Queue) -> None:
    pin(0)

    async def echo(request, context):
        return request

    async def run() -> None:
        server = grpc.aio.server(interceptors=interceptors(setup))
        handler = grpc.unary_unary_rpc_method_handler(echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


async def calls_per_second(port: int, seconds: float) -> float:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(CHANNELS)]
    methods = [channel.unary_unary("/bench.Echo/Echo") for channel in channels]
    done = 0
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await methods[number % CHANNELS](b"x" * 100, timeout=30)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    for channel in channels:
        await channel.close()
    return done / (time.monotonic() - started)


def measure(setup: str, seconds: float) -> float:
    ports = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(setup, ports), daemon=True)
    process.start()
    try:
        port = ports.get(timeout=60)
        pin(1)
        asyncio.run(calls_per_second(port, 2.0))  # warm-up
        return asyncio.run(calls_per_second(port, seconds))
    finally:
        process.terminate()
        process.join()


def report(rates: dict[str, list[float]], seconds: float) -> str:
    base = statistics.median(rates[SETUPS[0]])
    lines = [
        f"A trivial unary method, {CLIENTS} clients over {CHANNELS} channels, server and clients pinned to one core",
        f"each; {len(rates[SETUPS[0]])} alternating repetition(s) of {seconds:g} s; median, range in brackets.",
        "",
        "| set-up | calls/s | per call, over no interceptor |",
        "| --- | ---: | ---: |",
    ]
    for setup in SETUPS:
        rate = statistics.median(rates[setup])
        extra = f"+{1e6 / rate - 1e6 / base:.0f} us" if setup != SETUPS[0] else "-"
        lines.append(f"| {setup} | {rate:,.0f} [{min(rates[setup]):,.0f}-{max(rates[setup]):,.0f}] | {extra} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test, printed only")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (not with --quick)")
    args = parser.parse_args()
    seconds, repeats = (2.0, 1) if args.quick else (args.seconds, args.repeats)
    started = time.monotonic()
    rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    for _ in range(repeats):
        for setup in SETUPS:
            rates[setup].append(measure(setup, seconds))
            print(f"{setup}: {rates[setup][-1]:,.0f} calls/s", file=sys.stderr)
    body = report(rates, seconds)
    print(body)
    if not args.quick:
        results_file.record(args.out, "pipeline", "pipeline.py", None, started, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
