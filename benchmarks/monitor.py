"""The monitor served (docs/finance.md): the dated financial headlines through a live
``temporec serve`` with a ``[monitor]`` table, a trained ``finance`` model and an SQLite
store.

    finance-throughput   texts/s through Ingest (1 and 2 streams), beside the in-process
                         limit: the same texts embedded by the same encoder in this
                         process, with nothing else (the encoder is most of the work)
    finance-replay       every headline, in time order (``temporec monitor replay``'s
                         code): the alerts per month and kind, and those of February and
                         March 2020 with the most frequent words of their texts

    python benchmarks/monitor.py --models models/finance [models/finance-3-layers] [--only throughput|replay]

Each of ``--models`` holds a trained finance model (``temporec train --domain finance
...``, docs/finance.md): each is measured for throughput, the first replays. The headline texts are not written anywhere: the results name words
and counts only (their licence forbids sharing the texts).
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import results_file
from load import Server
from temporec_client import MonitoredText, TemporecClient

log = logging.getLogger("benchmarks.monitor")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "financial-headlines"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
STOPWORDS = frozenset(
    "a an the of to in on for and or as at by with from is are was be its it this that after over amid into up "
    "out says say said new more than not no will can could may us s his her their about us how why what who "
    "-".split()
)


def write_config(path: Path, store: Path) -> Path:
    path.write_text(f'store = "sqlite://{store}"\n[monitor]\ndomain = "finance"\n')
    return path


def serve(models: Path, workdir: Path, threads: int, name: str) -> Server:
    """A fresh monitoring server (its own store) on a free port."""
    config = write_config(workdir / f"{name}.toml", workdir / f"{name}.db")
    return Server(models, "--config", str(config), "--threads", str(threads))


def texts_of(headlines) -> list[MonitoredText]:
    return [MonitoredText(h.id, h.text, h.timestamp, h.source) for h in headlines]


def ingest_rate(target: str, streams: list[list[MonitoredText]], batch: int) -> tuple[float, int]:
    """Texts/s with each of ``streams`` sent on its own Ingest call at once; texts stored."""
    stored, failures = [], []

    def send(texts: list[MonitoredText]) -> None:
        try:
            with TemporecClient(target, timeout=None) as client:
                messages = [texts[i : i + batch] for i in range(0, len(texts), batch)]
                stored.append(client.ingest(messages).stored)
        except Exception as exc:  # reported below: a failed stream fails the run
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in streams]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(len(s) for s in streams) / (time.perf_counter() - started), sum(stored)


def artifact_of(models: Path) -> Path:
    """The model directory under ``models`` (the first, when there are several)."""
    return next(p.parent for p in sorted(models.glob("*/manifest.json")))


def in_process_rate(models: Path, texts: list[str], threads: int) -> float:
    """Texts/s of the model's own encoder embedding ``texts`` here: the served path's ceiling."""
    import torch

    from temporec.model.artifacts import read_manifest
    from temporec_plugins.encoders.local import LocalEncoder

    torch.set_num_threads(threads)
    path = artifact_of(models)
    tuned = read_manifest(path).tuned_encoder
    encoder = LocalEncoder(str(path / tuned["model"]), max_length=int(tuned["max_length"])) if tuned else LocalEncoder()
    encoder.encode(texts[:64])
    started = time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def describe_model(models: Path) -> str:
    """The model under ``models``: its tuning, encoder layers and PhraseBank test accuracy."""
    from temporec.model.artifacts import read_manifest

    manifest = read_manifest(artifact_of(models))
    layers = manifest.training.get("encoder_layers") or 6
    accuracy = manifest.metrics.get("test.accuracy@1", float("nan"))
    return f"{manifest.training.get('tuning', 'frozen')}, {layers} encoder layers, test accuracy {accuracy:.3f}"


def throughput_section(args, workdir: Path, headlines) -> str:
    texts = texts_of(headlines[: args.texts])
    # The same texts a millisecond apart: what a live stream is like, where a window closes
    # once a day, not every few dozen texts as in a replay (each close fits every topic).
    live = [replace(t, timestamp=texts[0].timestamp + i / 1000) for i, t in enumerate(texts)]
    rows = ["| model | path | streams | texts/s |", "| --- | --- | ---: | ---: |"]
    for n, models in enumerate(args.models):
        name = describe_model(models)
        limit = in_process_rate(models, [t.text for t in texts], args.threads)
        rows.append(f"| {name} | in process: the model's encoder alone | - | {limit:,.0f} |")
        runs = (("replayed: a window closes every ~60 texts", texts), ("live: one window", live))
        for k, (timing, sent) in enumerate(runs):
            for streams in (1, 2):
                server = serve(models, workdir, args.threads, f"throughput-{n}-{k}-{streams}")
                try:
                    rate, stored = ingest_rate(server.target, [sent[i::streams] for i in range(streams)], args.batch)
                finally:
                    server.stop()
                assert stored == len(sent), f"{stored} of {len(sent)} texts stored"
                rows.append(f"| {name} | served, {timing} | {streams} | {rate:,.0f} |")
    return "\n".join(
        [
            f"The first {len(texts):,} headlines in time order, {args.batch} a message, through a fresh server each "
            f"(`--threads {args.threads}`, SQLite store); the in-process limit: the same texts embedded by the "
            f"model's own encoder in the benchmark's process, {args.threads} torch threads. Served each way: "
            "replayed (the headlines' own times: a day's window closes every ~60 texts, and each close refits "
            "every topic's model) and live (the same texts a millisecond apart, in one window). Goal: 500 texts/s.",
            "",
            *rows,
        ]
    )


def replay_section(args, workdir: Path, headlines) -> str:
    from temporec.cli.monitor import AlertWatcher, batches

    texts = texts_of(headlines)
    server = serve(args.models[0], workdir, args.threads, "replay")
    try:
        with TemporecClient(server.target, timeout=None) as client:
            watcher = AlertWatcher(client, "benchmark")
            started = time.perf_counter()
            ingested = client.ingest(batches(texts, args.batch))
            seconds = time.perf_counter() - started
            alerts = watcher.collect(ingested.alerts)
            topics = len(client.topic_series("all")[1])
    finally:
        server.stop()
    lines = [
        f"{ingested.stored:,} headlines ({ingested.duplicates} duplicates, {ingested.late} late) in {seconds:.0f} s "
        f"({len(texts) / seconds:,.0f} texts/s) by the model ({describe_model(args.models[0])}), into {topics} "
        "topics; labels: "
        + ", ".join(f"{label} {n:,} ({n / ingested.stored:.1%})" for label, n in sorted(ingested.labels.items()))
        + f". Alerts: {len(alerts)}.",
        "",
        monthly_table(alerts),
        "",
        "Alerts of February and March 2020 (the words: the 5 most frequent content words of each alert's texts):",
        "",
        spring_2020(alerts),
    ]
    return "\n".join(lines)


def month(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m")


def monthly_table(alerts) -> str:
    kinds = sorted({a.kind for a in alerts})
    counts = Counter((month(a.window_start), a.kind) for a in alerts)
    months = sorted({m for m, _ in counts})
    rows = [f"| month | {' | '.join(kinds)} | topics |", "| --- |" + " ---: |" * (len(kinds) + 1)]
    for m in months:
        topics = len({a.topic for a in alerts if month(a.window_start) == m})
        rows.append(f"| {m} | " + " | ".join(str(counts[m, k]) for k in kinds) + f" | {topics} |")
    per_month = [sum(counts[m, k] for k in kinds) for m in months]
    if per_month:
        rows.append(f"| median a month | {statistics.median(per_month):.0f} in all | |")
    return "\n".join(rows)


def top_words(texts, count: int = 5) -> str:
    words = Counter(w for t in texts for w in set(re.findall(r"[a-z][a-z'-]+", t.text.lower())) if w not in STOPWORDS)
    return ", ".join(w for w, _ in words.most_common(count))


def spring_2020(alerts) -> str:
    rows = [
        "| window | topic | kind | observed | expected | bound | words |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for a in alerts:
        if month(a.window_start) in ("2020-02", "2020-03"):
            day = datetime.fromtimestamp(a.window_start, timezone.utc).strftime("%Y-%m-%d")
            rows.append(
                f"| {day} | {a.topic} | {a.kind} | {a.observed:.3g} | {a.expected:.3g} | {a.high:.3g} | "
                f"{top_words(a.texts)} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("throughput", "replay"), help="one section only")
    parser.add_argument(
        "--models", type=Path, nargs="+", required=True, help="directories with a trained finance model each"
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the financial-headlines folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    parser.add_argument("--texts", type=int, default=10_000, help="texts in the throughput runs (default 10000)")
    parser.add_argument("--batch", type=int, default=256, help="texts per Ingest message (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.data.is_dir() or not all(any(m.glob("*/manifest.json")) for m in args.models):
        print(f"need the headlines at {args.data} and a finance model under each of {args.models}", file=sys.stderr)
        return 1
    from temporec.data.headlines import read_headlines

    headlines = read_headlines(args.data)
    shown = argv if argv is not None else sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="temporec-monitor-") as scratch:
        for name, section in (("throughput", throughput_section), ("replay", replay_section)):
            if args.only in (None, name):
                started = time.monotonic()
                body = section(args, Path(scratch), headlines)
                results_file.record(args.out, f"finance-{name}", "monitor.py", shown, started, body)
                log.info("finance-%s written to %s", name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
