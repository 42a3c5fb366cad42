"""The encoders of a served model (issue 17): cold start, coalescing, the cache, the Triton hop.

    .venv/bin/python benchmarks/encoders.py           # about 10 minutes: writes the
                                                      # "encoders" section of benchmarks/RESULTS.md
    .venv/bin/python benchmarks/encoders.py --quick   # a smoke test: printed only

Texts are MovieLens-1M titles with their genres (``../shared/data/ml-1m``; without it,
generated titles), embedded by the bundled all-MiniLM-L6-v2; every process runs torch on
one thread (the server's default, ``--threads 1``; Triton's with OMP_NUM_THREADS=1).

- cold start: ``temporec serve`` in its own process with an untrained ``video`` model over
  MiniLM item vectors, started with and without ``--warm-encoders``; the first text-only
  ``Recommend`` (one event known only by its text) against the median of the next ones
  (each a text not seen before, so no cache helps), and the time to the ready line.
- coalescing: ``--clients`` concurrent callers of the ``local`` encoder, one text a call,
  through its coalescing ``aencode`` and through the base ``Encoder.aencode`` it replaced
  (each call its own forward pass on a pool of worker threads): texts per second.
- cache: one repeated text through the server's ``EncoderPool`` with its cache, against
  the same text with no cache: seconds per call.
- the Triton hop: the same 512 texts through the ``triton`` encoder (the bundled Triton,
  the ``python`` format of ``temporec export-triton``) and the in-process ``local``
  encoder, alternately. Skipped, with the reason, where the bundled Triton cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: this process, Triton's and the server's

import results_file
from load import RESULTS, Server

ROOT = Path(__file__).resolve().parents[1]
MOVIES = ROOT.parent / "shared" / "data" / "ml-1m" / "movies.dat"
T0 = 1_700_000_000.0
#: Seconds before each timed text-only call, the first and the later ones alike: on a busy
#: machine a call after a pause is slower than one right after another (about 2x here,
#: with or without a cold start), so back-to-back later calls would flatter them.
PAUSE = 1.0


@dataclasses.dataclass
class Plan:
    starts: int = 3  # cold starts of each kind
    later: int = 10  # text-only calls after the first
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 5.0  # per coalescing measurement
    cache_calls: int = 200
    hop_texts: int = 512
    hop_repeats: int = 5
    triton: bool = True


QUICK = Plan(starts=1, later=5, clients=(1, 8), seconds=2.0, cache_calls=50, hop_texts=64, hop_repeats=1)


def titles() -> list[str]:
    """Item texts: MovieLens-1M's titles and genres, else generated ones."""
    if MOVIES.is_file():
        rows = [line.split("::") for line in MOVIES.read_text(encoding="latin-1").splitlines() if line]
        return [f"{title}: {genres.replace('|', ', ')}" for _, title, genres in rows]
    words = "quiet sea city night storm garden river station letter winter secret road".split()
    rng = random.Random(0)
    return [" ".join(rng.choices(words, k=rng.randint(2, 9))).title() for _ in range(4000)]


# -- cold start --------------------------------------------------------------------------------


def save_model(root: Path, texts: list[str]) -> None:
    """An untrained video/lstm model over MiniLM vectors of ``texts`` (the latency of a
    text-only call does not depend on training)."""
    import torch

    from temporec.contract.registry import load_registry
    from temporec.contract.types import Catalog
    from temporec.model import DEFAULT_MODEL_ID
    from temporec.model.artifacts import Manifest
    from temporec.model.artifacts import save_model as save
    from temporec.model.recommender import SequenceRecommender
    from temporec_plugins.encoders.local import LocalEncoder

    torch.manual_seed(0)
    head = load_registry().heads["lstm"](64, 50)
    model = SequenceRecommender(head, LocalEncoder(device="cpu").encode(texts), n_actions=2)
    manifest = Manifest(
        domain="video",
        head="lstm",
        encoder="local",
        encoder_model_id=DEFAULT_MODEL_ID,
        dim=64,
        max_len=50,
        actions=["watch", "rate"],
        version="encoders-benchmark",
    )
    save(root, manifest, model, Catalog([f"m{i}" for i in range(len(texts))], texts), torch.ones(len(texts)))


def cold_start(models: Path, warm: bool, fresh_texts: list[str], later: int) -> dict:
    """Seconds to the ready line, the first text-only call's and the later ones' (median)."""
    from temporec_client import Event, TemporecClient

    started = time.perf_counter()
    # A deadline far past the load: without warm-up the first call waits for it (over 30 s seen here).
    flags = ["--threads", "1", "--max-request-seconds", "300", "--warm-encoders" if warm else "--no-warm-encoders"]
    server = Server(models, *flags)
    ready = time.perf_counter() - started
    try:
        with TemporecClient(server.target, timeout=300) as client:
            client.health()  # the channel connected: the client's first connection is not the server's cost
            seconds = []
            for text in fresh_texts[: later + 1]:
                time.sleep(PAUSE)
                begun = time.perf_counter()
                client.recommend("video", [Event("", "watch", T0, text=text)], k=10)
                seconds.append(time.perf_counter() - begun)
    finally:
        server.stop()
    return {"ready": ready, "first": seconds[0], "later": statistics.median(seconds[1:])}


# -- coalescing and the cache -------------------------------------------------------------------


async def texts_per_second(encode, texts: list[str], clients: int, seconds: float) -> float:
    """``clients`` callers, each awaiting ``encode([text])`` in turn for ``seconds``."""
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(number: int) -> None:
        nonlocal done
        position = number
        while time.perf_counter() < stop:
            await encode([texts[position % len(texts)]])
            position += clients
            done += 1

    begun = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(clients)))
    return done / (time.perf_counter() - begun)


def coalescing(texts: list[str], plan: Plan) -> list[dict]:
    from temporec.contract.encoders import Encoder
    from temporec_plugins.encoders.local import LocalEncoder

    encoder = LocalEncoder(device="cpu")
    one_at_a_time = lambda batch: Encoder.aencode(encoder, batch)  # noqa: E731 (the base class's: no coalescing)
    rows = []
    for clients in plan.clients:
        rates = {}
        for name, encode in (("one-at-a-time", one_at_a_time), ("coalesced", encoder.aencode)):
            asyncio.run(texts_per_second(encode, texts, clients, 0.5))  # warm-up
            rates[name] = asyncio.run(texts_per_second(encode, texts, clients, plan.seconds))
            print(f"{clients} clients, {name}: {rates[name]:.0f} texts/s", file=sys.stderr)
        rows.append({"clients": clients, **rates})
    encoder.close()
    return rows


def cache_speedup(text: str, calls: int) -> dict:
    from temporec.serving.encoder_pool import EncoderPool
    from temporec_plugins.encoders.local import LocalEncoder

    async def per_call(cache_size: int) -> float:
        pool = EncoderPool({"local": LocalEncoder}, {"local": {"device": "cpu"}}, cache_size)
        encoder = await pool.get("local")
        await pool.encode(encoder, [text])  # loaded, and cached when there is a cache
        begun = time.perf_counter()
        for _ in range(calls):
            await pool.encode(encoder, [text])
        seconds = (time.perf_counter() - begun) / calls
        pool.close()
        return seconds

    miss, hit = asyncio.run(per_call(0)), asyncio.run(per_call(1000))
    return {"miss": miss, "hit": hit}


# -- the Triton hop -------------------------------------------------------------------------------


def triton_unavailable() -> str:
    """Why the bundled Triton cannot run here, or "" when it can."""
    if (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        return "the Triton server bundled in nvidia-pytriton runs on Linux x86_64 only"
    try:
        from temporec.triton.local_server import bundled_triton

        bundled_triton()
    except Exception as exc:  # not installed, or its binary missing
        return f"no bundled Triton ({type(exc).__name__}: {exc}); scripts/setup.sh installs nvidia-pytriton"
    return ""


HOP_MODELS = {"triton": "enc", "triton, tokens in": "enc_tokens"}  # export-triton's python, python-tokens


def triton_hop(workdir: Path, texts: list[str], repeats: int) -> dict:
    """Seconds for ``texts`` through each encoder (lists over the repeats), alternated, and
    the text model's time inside Triton (its statistics over the repeats)."""
    from temporec.cli import main as temporec_main
    from temporec.triton.local_server import LocalTriton
    from temporec_plugins.encoders.local import LocalEncoder
    from temporec_plugins.encoders.triton import TritonEncoder

    repository = workdir / "triton-repo"
    export = ["export-triton", "--out", str(repository), "--name", "enc", "--format", "python"]
    if temporec_main([*export, "--format", "python-tokens"]) != 0:
        raise SystemExit("export-triton failed")
    encoders = {"local": LocalEncoder(device="cpu")}
    with LocalTriton(repository, list(HOP_MODELS.values()), workdir=workdir / "triton-run") as triton:
        encoders.update({name: TritonEncoder(url=triton.url, model=model) for name, model in HOP_MODELS.items()})

        async def seconds(encoder) -> float:
            begun = time.perf_counter()
            await encoder.aencode(texts, 600)
            return time.perf_counter() - begun

        async def alternate() -> dict:
            for encoder in encoders.values():  # warm-up: first passes, channels
                await seconds(encoder)
            times = {name: [] for name in encoders}
            for _ in range(repeats):
                for name, encoder in encoders.items():
                    times[name].append(await seconds(encoder))
            return times

        try:
            before = inside_triton(triton.url, "enc")
            times = asyncio.run(alternate())
            inside = {key: value - before[key] for key, value in inside_triton(triton.url, "enc").items()}
            return {"batch": encoders["triton"].interface.max_batch_size, "times": times, "inside": inside}
        finally:
            for encoder in encoders.values():
                encoder.close()


def inside_triton(url: str, model: str) -> dict[str, float]:
    """Triton's cumulative seconds for ``model``: whole requests, queued, inputs, the model's
    execute, outputs."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    keys = ("success", "queue", "compute_input", "compute_infer", "compute_output")
    return {key: int(stats.get(key, {}).get("ns", 0)) / 1e9 for key in keys}


# -- the report -------------------------------------------------------------------------------------


def measure(workdir: Path, plan: Plan) -> dict:
    texts = titles()
    rng = random.Random(0)
    catalog, fresh = texts[:500], texts[500:]
    models = workdir / "models"
    save_model(models, catalog)
    starts = {True: [], False: []}
    for _ in range(plan.starts):  # alternated, so that drifts in the load hit both
        for warm in (True, False):
            starts[warm].append(cold_start(models, warm, rng.sample(fresh, plan.later + 1), plan.later))
            print(f"warm {warm}: {starts[warm][-1]}", file=sys.stderr)
    result = {
        "starts": starts,
        "coalescing": coalescing(fresh, plan),
        "cache": cache_speedup(fresh[0], plan.cache_calls),
    }
    reason = triton_unavailable() if plan.triton else "not asked for (--no-triton)"
    result["triton_skipped"] = reason
    if not reason:
        result["triton"] = triton_hop(workdir, rng.sample(texts, plan.hop_texts), plan.hop_repeats)
    return result


def report(plan: Plan, result: dict, load: tuple[str, str]) -> str:
    lines = [
        "MiniLM (all-MiniLM-L6-v2) on one torch thread in every process. Load average (`uptime`) before and",
        f"after: {load[0]} / {load[1]}; the 2 cores were shared with other work, so take the ratios more",
        "than the seconds.",
        "",
        f"**Cold start** (`temporec serve`, {plan.starts} start(s) of each kind, alternated; a text-only",
        f"`Recommend` is one event known only by a title it has not seen; later: the median of the next {plan.later};",
        f"each call {PAUSE:g} s after the previous answer, the first {PAUSE:g} s after the ready line and a health check",
        "that connects the channel):",
        "",
        "| `--warm-encoders` | ready line s | first call s | later call s | first / later (each start's) | goal <= 1.2 |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for warm, runs in result["starts"].items():
        ready, first, later = (statistics.median(run[key] for run in runs) for key in ("ready", "first", "later"))
        ratios = [run["first"] / run["later"] for run in runs]
        ratio = statistics.median(ratios)
        lines.append(
            f"| {'on' if warm else 'off'} | {ready:.2f} | {first:.3f} | {later:.3f} | {ratio:.2f} {spread(ratios)} | "
            f"{'met' if ratio <= 1.2 else 'not met'} |"
        )
    lines += [
        "",
        f"**Coalescing** (the `local` encoder, one text a call, {plan.seconds:g} s each; one-at-a-time is the",
        "base `Encoder.aencode` it replaced: each call its own forward pass on 4 worker threads):",
        "",
        "| clients | one-at-a-time texts/s | coalesced texts/s | coalesced / one-at-a-time |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in result["coalescing"]:
        ratio = row["coalesced"] / row["one-at-a-time"]
        lines.append(f"| {row['clients']} | {row['one-at-a-time']:,.0f} | {row['coalesced']:,.0f} | {ratio:.2f} |")
    cache = result["cache"]
    lines += [
        "",
        f"**Cache** (`EncoderPool.encode`, one repeated text, {plan.cache_calls} calls): "
        f"{cache['miss'] * 1000:.2f} ms a call encoded, {cache['hit'] * 1000:.3f} ms from the cache "
        f"({cache['miss'] / cache['hit']:,.0f}x).",
        "",
    ]
    if result["triton_skipped"]:
        lines.append(f"**Triton hop**: skipped: {result['triton_skipped']}.")
    else:
        hop = result["triton"]
        lines += [
            f"**Triton hop** ({plan.hop_texts} titles in one `aencode` call; the bundled Triton 2.51 on this machine,",
            f"`export-triton --format python` (text in) and `python-tokens`, max_batch_size {hop['batch']};",
            f"{plan.hop_repeats} alternated repetition(s); the median seconds, and the median of each repetition's",
            "ratio to the local encoder's time next to it (drifts in the machine's load cancel), ranges in brackets):",
            "",
            "| encoder | seconds | / local | goal <= 1.05 |",
            "| --- | ---: | ---: | --- |",
        ]
        for name, times in hop["times"].items():
            ratios = [mine / theirs for mine, theirs in zip(times, hop["times"]["local"])]
            ratio = statistics.median(ratios)
            goal = "" if name == "local" else ("met" if ratio <= 1.05 else "not met")
            shown = "1" if name == "local" else f"{ratio:.3f} {spread(ratios)}"
            lines.append(f"| {name} | {statistics.median(times):.2f} {spread(times)} | {shown} | {goal} |")
        inside, total = hop["inside"], sum(hop["times"]["triton"])
        lines += [
            "",
            f"The text model's requests, summed over the repetitions ({total:.1f} s at the client; the encoder keeps",
            f"2 batches in flight, so requests overlap): {inside['compute_infer']:.1f} s in the model's `execute`",
            f"(tokenizer and forward pass), {inside['queue']:.1f} s queued behind the other batch, "
            f"{inside['compute_input'] + inside['compute_output']:.2f} s moving inputs and outputs.",
        ]
    return "\n".join(lines) + "\n"


def spread(values: list[float]) -> str:
    return f"[{min(values):.2f}-{max(values):.2f}]" if len(values) > 1 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test, printed only")
    parser.add_argument("--no-triton", action="store_true", help="skip the Triton hop")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (not with --quick)")
    args = parser.parse_args(argv)
    plan = dataclasses.replace(QUICK if args.quick else Plan(), triton=not args.no_triton)
    started, before = time.monotonic(), results_file.load_average()
    workdir = Path(tempfile.mkdtemp(prefix="temporec-encoders-"))
    try:
        import torch

        torch.set_num_threads(1)
        result = measure(workdir, plan)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    body = report(plan, result, (before, results_file.load_average()))
    print(body)
    if not args.quick:
        results_file.record(args.out, "encoders", "encoders.py", argv, started, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
