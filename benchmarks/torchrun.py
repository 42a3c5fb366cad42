"""One training process against two under torchrun (gloo, one torch thread each), at equal
epochs: what data-parallel training changes in accuracy, and what it saves in time.

    .venv/bin/python benchmarks/torchrun.py                # Amazon Office, ids only, 20 epochs each
    .venv/bin/python benchmarks/torchrun.py --epochs 5     # a shorter look

Both rows train ``ar`` on item ids with the ``events`` domain (as ``temporec train --head ar
--no-text`` does), the same settings and seed, no time budget and patience above the
epochs, so both run every epoch and keep their best by validation NDCG@10. The second row
is ``torchrun --standalone --nproc_per_node 2`` running this script as its child: each
process trains on half of every batch of 128 (``temporec.training.distributed``), so both
rows take the same steps. The rows run one after the other (two processes take both cores
of a 2-core machine). Test: leave-one-out, full ranking, the history masked, intervals by
bootstrap over the test users. Section ``torchrun`` of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import results_file
from amazon import DATA, RESULTS, SETS, load_amazon, metric_cells, test_ranks
from temporec.contract.registry import load_registry
from temporec.model import read_manifest
from temporec.training import TrainConfig, train

SECTION = "torchrun"
HERE = Path(__file__).resolve()
CONFIG = TrainConfig(dim=64, max_len=50, batch_size=128, lr=1e-3, use_text=False, seed=0, threads=1, device="cpu")


def child(data: Path, epochs: int, work: Path, report: Path) -> None:
    """One training run (in each process torchrun starts, or alone); rank 0 tests the
    artifact and writes ``report``."""
    torch.set_num_threads(1)
    dataset = load_amazon(data)
    config = replace(CONFIG, epochs=epochs, patience=epochs + 1, time_budget_s=0)
    registry = load_registry()
    clock: dict[str, float] = {}
    started = time.monotonic()
    path = train(
        dataset,
        registry.heads["ar"],
        torch.zeros(len(dataset.catalog), 0),
        domain=registry.domains["events"],
        encoder_name="local",
        encoder_model_id="",
        out_dir=work,
        config=config,
        on_epoch=lambda epoch, values: clock.update(training=values["seconds"]),
    )
    if os.environ.get("RANK", "0") == "0":  # measured here, by the code that wrote the artifact
        train_call = time.monotonic() - started
        best = read_manifest(path).metrics["best_epoch"]
        cells = metric_cells(test_ranks(path, dataset))
        summary = {"training": clock["training"], "train_call": train_call, "best_epoch": int(best), "cells": cells}
        report.write_text(json.dumps(summary))


def run(processes: int, args: argparse.Namespace, work: Path) -> dict:
    """One row: this script as a child, alone or under torchrun; its report and wall time."""
    out, report = work / f"models-{processes}", work / f"report-{processes}.json"
    script = [str(HERE), "--child", str(args.folder), str(args.epochs), str(out), str(report)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            *script,
        ]
    started = time.monotonic()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {**json.loads(report.read_text()), "wall": time.monotonic() - started}


def render(rows: dict[int, dict], dataset, epochs: int, loads: tuple[str, str]) -> str:
    lines = [
        "| processes | HR@10 (95% CI) | NDCG@10 (95% CI) | best epoch | training s (epochs + validation) | wall s (start to exit) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for processes, row in rows.items():
        cells = " | ".join(row["cells"])
        lines.append(f"| {processes} | {cells} | {row['best_epoch']} | {row['training']:.0f} | {row['wall']:.0f} |")
    one, two = rows[1], rows[2]
    events = sum(map(len, dataset.sequences.values()))
    return (
        f"Data: `{Path(dataset.name).name}` ({len(dataset.sequences)} users, {len(dataset.catalog)} items, {events} "
        f"events), ids only; `ar`, dim 64, max_len 50, batch 128 (the global batch: 64 per process with two), "
        f"lr 1e-3, {epochs} epochs each, one torch thread per process, gloo. Load average (1, 5, 15 min) before: "
        f"{loads[0]}; after: {loads[1]}: the machine was shared with other work, so the times are indicative.\n\n"
        + "\n".join(lines)
        + f"\n\nTwo processes / one: training {two['training'] / one['training']:.2f}x the time, wall "
        f"{two['wall'] / one['wall']:.2f}x.\n"
    )


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--set", choices=SETS, default="amazon-office", help="the shared data set (default amazon-office)"
    )
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each row (default 20)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    args.folder = args.data / args.set
    if not args.folder.is_dir():
        raise SystemExit(f"no shared data at {args.folder}: nothing to benchmark")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        folder, epochs, work, report = argv[1:5]
        child(Path(folder), int(epochs), Path(work), Path(report))
        return 0
    args = arguments(argv)
    started, before = time.monotonic(), results_file.load_average()
    dataset = load_amazon(args.folder)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="temporec-torchrun-") as work:
        for processes in (1, 2):
            rows[processes] = run(processes, args, Path(work))
    body = render(rows, dataset, args.epochs, (before, results_file.load_average()))
    results_file.record(args.out, SECTION, "torchrun.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
