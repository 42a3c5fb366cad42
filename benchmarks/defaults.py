"""Defaults for a new user's data: what `temporec train` gives a shop log of item ids only,
through the commands a user runs, side by side with settings that let the time budget and
validation decide, and what the torch thread count does on a busy machine.

    .venv/bin/python benchmarks/defaults.py                      # both sections
    .venv/bin/python benchmarks/defaults.py --only defaults      # one

Data: ``taobao-userbehavior`` from ``../shared/data`` written out as a RetailRocket-style
log (its own column names, times in milliseconds, no item text, no categories) with an
``events.toml`` naming its columns and actions, so that it is read as such a log would be.
Sections ``defaults-shop-ids`` and ``threads`` of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_file
from temporec.cli import main as temporec
from temporec.data import load_dataset
from temporec.model import read_manifest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TAOBAO_ACTIONS = {"view": "pv", "cart": "cart", "favourite": "fav", "purchase": "buy"}  # retail -> the log's


def write_shop_log(source: Path, directory: Path) -> Path:
    """The Taobao events as a shop log of ids: visitorid, itemid, event, timestamp (ms)."""
    dataset = load_dataset(source)
    with open(directory / "events.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "visitorid", "event", "itemid"])
        for user, events in dataset.sequences.items():
            for e in events:
                writer.writerow([int(e.timestamp * 1000), user, TAOBAO_ACTIONS[e.action], e.item_id])
    mapping = ", ".join(f'{log} = "{ours}"' for ours, log in TAOBAO_ACTIONS.items())
    (directory / "events.toml").write_text(
        'columns = { user_id = "visitorid", item_id = "itemid", action = "event" }\n'
        f'actions = {{ {mapping} }}\ntime_unit = "ms"\n'
    )
    return directory


def command(*argv: str) -> str:
    """Run ``temporec`` in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = temporec(list(argv))
    if code:
        raise SystemExit(f"temporec {' '.join(argv)} failed ({code})")
    return out.getvalue()


def train_and_eval(data: Path, models: Path, *flags: str) -> tuple[dict[str, float], dict, float]:
    started = time.monotonic()
    printed = command("train", "--domain", "retail", "--data", str(data), "--out", str(models), *flags)
    seconds = time.monotonic() - started
    path = printed.strip().splitlines()[-1]
    metrics = json.loads(command("eval", "--model", path, "--device", "cpu", "--json"))["metrics"]
    return metrics, read_manifest(path).metrics, seconds


COLUMNS = ("test.hr@10", "test.ndcg@10", "purchase.hr@10", "purchase.ndcg@10")


def row(name: str, metrics: dict[str, float], prefix: str = "", trained: str = "") -> str:
    values = " | ".join(f"{metrics[prefix + c]:.4f}" for c in COLUMNS)
    return f"| {name} | {values} | {trained} |"


def defaults_section(args: argparse.Namespace, data: Path, work: Path) -> str:
    budget = str(args.minutes)
    common = ("--head", "lstm", "--threads", "1", "--device", "cpu", "--seed", "0", "--encoder", "local")
    runs = {
        "0.1 defaults (--epochs 20 --patience 3)": ("--epochs", "20", "--patience", "3"),
        f"0.2 defaults (--minutes {budget})": ("--minutes", budget),
        f"0.2 defaults, full softmax (--minutes {budget} --negatives 0)": ("--minutes", budget, "--negatives", "0"),
    }  # fmt: skip
    lines = [
        "| ranker | test HR@10 | test NDCG@10 | purchase HR@10 | purchase NDCG@10 | trained |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    baselines = None
    for name, flags in runs.items():
        metrics, trained, seconds = train_and_eval(data, work / "models" / str(len(lines)), *common, *flags)
        baselines = metrics
        lines.append(
            row(
                f"lstm, {name}",
                metrics,
                trained=f"{trained['epochs']:.0f} epochs (best {trained['best_epoch']:.0f}), {seconds:.0f} s",
            )
        )
    lines += [row(name, baselines, f"{name}.") for name in ("popularity", "recent")]
    dataset = load_dataset(data)
    events = sum(map(len, dataset.sequences.values()))
    return (
        f"Data: `taobao-userbehavior` written as a shop log of ids ({len(dataset.sequences)} users, "
        f"{len(dataset.catalog)} items, {events} events; no text, no categories), read through its "
        "`events.toml`. `temporec train --domain retail` then `temporec eval --json`, one torch thread; "
        "the rows differ only in the flags named. `test`: leave-one-out, the history masked but a "
        "target already in it; `purchase`: test targets that are purchases, under the shop's rules. "
        "Baselines from the same evaluation.\n\n" + "\n".join(lines)
    )


def epoch_seconds(data: Path, models: Path, threads: int) -> float:
    _, trained, seconds = train_and_eval(
        data, models, "--head", "lstm", "--threads", str(threads), "--device", "cpu", "--encoder", "local",
        "--epochs", "3", "--patience", "100",
    )  # fmt: skip
    return seconds / trained["epochs"]


def threads_section(args: argparse.Namespace, data: Path, work: Path) -> str:
    lines = ["| torch threads | idle machine: s per epoch | one core busy: s per epoch |", "| ---: | ---: | ---: |"]
    for threads in (1, 2):
        idle = epoch_seconds(data, work / f"idle-{threads}", threads)
        # A competing process: one core spinning in pure Python for as long as the run.
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            busy = epoch_seconds(data, work / f"busy-{threads}", threads)
        finally:
            spinner.kill()
            spinner.wait()
        lines.append(f"| {threads} | {idle:.1f} | {busy:.1f} |")
    return (
        "The same training (lstm, 3 epochs, training and validation time per epoch), on the idle machine and "
        "with another process spinning on one core.\n\n" + "\n".join(lines)
    )


SECTIONS = {"defaults-shop-ids": defaults_section, "threads": threads_section}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="run the sections whose names start with these")
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    parser.add_argument("--minutes", type=float, default=3.0, help="the time budget of the budget runs (default 3)")
    args = parser.parse_args(argv)
    source = args.data / "taobao-userbehavior"
    if not source.is_dir():
        print(f"no shared data at {source}: nothing to benchmark", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="temporec-defaults-") as work:
        data = write_shop_log(source, Path(work))
        for name, section in SECTIONS.items():
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            started = time.monotonic()
            body = section(args, data, Path(work) / name)
            results_file.record(args.out, name, "defaults.py", argv, started, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
