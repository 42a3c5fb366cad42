"""Does tuning the language model on conversation turns pay? BANKING77 and StackFAQ
(issue 14): the ``customer_service`` model over the frozen encoder against the same model
whose encoder is tuned on the turns, side by side, with the domain's baselines.

    .venv/bin/python benchmarks/conversations.py                          # BANKING77, 40 min a tuned run
    .venv/bin/python benchmarks/conversations.py --set stackfaq --only frozen,first3 --minutes 20
    .venv/bin/python benchmarks/conversations.py --two-stages --minutes 30   # frozen, then tuned from it

Every row trains through ``CustomerServiceDomain.train`` (what ``temporec train --domain
customer_service`` runs) with the ``lstm`` head, one torch thread, early stopping on
validation MRR and a time budget, and is measured on the test split by its ``evaluate``
(what ``temporec eval`` runs): accuracy@1/@3 and MRR with 95% bootstrap intervals over the
test conversations. The baselines (popularity, BM25, the frozen encoder's cosine) come from
the first row's evaluation. Sections ``tuning-banking77`` and ``tuning-stackfaq`` of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import results_file
from finance import TUNED, Run, measure

DATA = results_file.ROOT.parent / "shared" / "data"
GOALS = {"banking77": ("accuracy@1", 0.93)}  # fine-tuned BERT-class models reach 0.93-0.94 (issue 14)
BASELINES = ("popularity", "bm25", "frozen-encoder")
METRICS = ("accuracy@1", "accuracy@3", "mrr")
RUNS = (
    Run("frozen", "frozen MiniLM + `lstm` head", {"patience": 10}, tuned=False),
    Run(
        "first3",
        "first 3 layers, all tuned (`--tuning top --encoder-layers 3 --top-layers 3`)",
        {**TUNED, "tuning": "top", "encoder_layers": 3, "top_layers": 3, "encoder_lr": 1e-4},
    ),
    Run("lora", "LoRA (rank 8, query and value)", {**TUNED, "tuning": "lora", "encoder_lr": 5e-4}),
)
TWO_STAGES = (  # --two-stages: the frozen model, then its encoder tuned from it
    RUNS[0],
    Run(
        "frozen-top2",
        "the frozen row's model, then its encoder's top 2 layers tuned (`--init-from`; head lr 1e-3 after 300 "
        "warm-up steps, patience 10)",
        {**TUNED, "lr": 1e-3, "warmup_steps": 300, "patience": 10, "tuning": "top", "top_layers": 2},
        after="frozen",
    ),
)


def cell(metrics: dict, key: str) -> str:
    low, high = metrics.get(key + "_low"), metrics.get(key + "_high")
    return f"{metrics[key]:.3f}" + (f" ({low:.3f}-{high:.3f})" if low is not None else "")


def render(set_name: str, results: dict[str, dict], minutes: float, rows: tuple[Run, ...] = RUNS) -> str:
    first = next(iter(results.values()))
    lines = [
        "| model | " + " | ".join(f"{m} (95% CI)" for m in METRICS) + " | epochs (best), train min |",
        "| --- |" + " ---: |" * (len(METRICS) + 1),
    ]
    for name in BASELINES:
        lines.append(
            f"| {name} | " + " | ".join(cell(first["metrics"], f"{name}.test.{m}") for m in METRICS) + " | - |"
        )
    for run in rows:
        if run.name in results:
            result = results[run.name]
            trained = f"{result['epochs']} ({result['best_epoch']}), {result['minutes']:.1f}"
            lines.append(
                f"| {run.label} | "
                + " | ".join(cell(result["metrics"], f"test.{m}") for m in METRICS)
                + f" | {trained} |"
            )
    text = (
        f"Data: `{set_name}` ({first['sentences']} test conversations). Every trained row: the `lstm` head through "
        "`temporec train --domain customer_service`, one torch thread, early stopping on validation MRR; frozen: "
        f"texts up to 256 tokens, batch 128; tuned: up to {minutes:g} min, batch 32 in length buckets, texts up to "
        "64 tokens, head lr 3e-3, encoder lr 1e-4 (top layers) or 5e-4 (LoRA). Numbers on the test split only; "
        "intervals: 95% bootstrap over its conversations.\n\n" + "\n".join(lines)
    )
    if set_name in GOALS:
        metric, goal = GOALS[set_name]
        best = max(result["metrics"][f"test.{metric}"] for result in results.values())
        text += f"\n\nGoal: {metric} >= {goal:.2f}; the best trained row: {best:.3f} ({'met' if best >= goal else 'not met'})."
    return text


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="banking77", choices=("banking77", "stackfaq"), help="data set")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--only", default="", help=f"rows to train, of {','.join(r.name for r in RUNS)} (default all)")
    parser.add_argument(
        "--two-stages", action="store_true", help="the frozen model, then tuned from it (section tuning-two-stages-*)"
    )
    parser.add_argument("--minutes", type=float, default=40.0, help="training budget of each tuned run (default 40)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--work", type=Path, default=None, help="where models go (default: a temporary directory)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(1)  # one core: the machine's other core is other work's
    rows, section = (TWO_STAGES, f"tuning-two-stages-{args.set}") if args.two_stages else (RUNS, f"tuning-{args.set}")
    only = set(filter(None, args.only.split(",")))
    if only - {r.name for r in rows}:
        raise SystemExit(f"--only: {sorted(only)}; allowed: {', '.join(r.name for r in rows)}")
    missing = {r.after for r in rows if r.after and r.name in only} - only
    if missing:
        raise SystemExit(f"--only: the rows {sorted(only)} start from {sorted(missing)}: add them")
    started, before = time.monotonic(), results_file.load_average()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        for run in rows:
            if not only or run.name in only:
                print(f"{args.set}: {run.name}", file=sys.stderr, flush=True)
                start = results[run.after]["path"] if run.after else ""
                results[run.name] = measure(run, args.data / args.set, args.minutes, work, "customer_service", start)
    body = render(args.set, results, args.minutes, rows)
    body += f"\n\nLoad average (1, 5, 15 min) before: {before}; after: {results_file.load_average()} (2 cores)."
    results_file.record(args.out, section, "conversations.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
