"""Financial sentiment on PhraseBank (issue 18): the ``finance`` domain's models against
its baselines, side by side, at two agreement levels.

    .venv/bin/python benchmarks/finance.py                       # AllAgree and 50Agree, 4 min a tuned run
    .venv/bin/python benchmarks/finance.py --levels AllAgree --only frozen,lora --minutes 10

Per level, rows: the majority class, the keyword lexicon, the frozen all-MiniLM-L6-v2 with
logistic regression (its L2 strength chosen on the validation split), then the ``lstm``
head trained through ``FinanceDomain.train`` (what ``temporec train --domain finance``
runs) with the encoder frozen, LoRA, its top 2 layers and all 6 layers ("full"
fine-tuning) tuned. Every run: one torch thread, one process at a time, early stopping on
validation MRR, a time budget (``--minutes`` for the tuned runs). Every number is measured
on the test split by ``FinanceDomain.evaluate`` (what ``temporec eval`` runs): accuracy,
macro-F1 and per-class F1, with 95% bootstrap intervals over the test sentences; the
baselines come from the first model's evaluation (they do not depend on it). The split is
PhraseBank's fixed one (``temporec.data.read_phrasebank``). Section ``finance-phrasebank``
of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import results_file
from temporec.cli.evaluate import ModelEncoder
from temporec.contract.registry import load_registry
from temporec.model import load_model
from temporec.training import TrainConfig, eval_request, train_request

DATA = results_file.ROOT.parent / "shared" / "data" / "financial-phrasebank"
LEVELS = ("AllAgree", "50Agree")
GOALS = {"AllAgree": 0.97, "50Agree": 0.86}  # fine-tuned FinBERT's published accuracy (issue 18)
BASELINES = (("majority", "majority class"), ("lexicon", "keyword lexicon"), ("frozen-lr", "frozen MiniLM + LR"))


@dataclass
class Run:
    name: str
    label: str
    config: dict = field(default_factory=dict)  # TrainConfig fields over BASE
    tuned: bool = True  # bounded by --minutes (else FROZEN_MINUTES)
    after: str = ""  # the row whose model this one starts from (``--init-from``): run it first


BASE = dict(seed=0, threads=1, device="cpu", patience=3)
TUNED = dict(batch_size=32, length_buckets=True, text_max_length=64, lr=3e-3)  # a few hundred steps: a faster head
RUNS = (
    Run("frozen", "frozen MiniLM + `lstm` head", {"patience": 10}, tuned=False),
    Run("lora", "LoRA (rank 8, query and value)", {**TUNED, "tuning": "lora", "encoder_lr": 5e-4}),
    Run("top2", "top 2 layers", {**TUNED, "tuning": "top", "top_layers": 2, "encoder_lr": 1e-4}),
    Run("full", "full (top 6 layers)", {**TUNED, "tuning": "top", "top_layers": 6, "encoder_lr": 5e-5}),
    Run(
        "first3",
        "first 3 layers, all tuned (`--encoder-layers 3`)",
        {**TUNED, "tuning": "top", "encoder_layers": 3, "top_layers": 3, "encoder_lr": 1e-4},
    ),
)
FROZEN_MINUTES = 2.0


def measure(
    run: Run, data: Path, minutes: float, work: Path, domain_name: str = "finance", init_from: str = ""
) -> dict:
    """Train one row's model with ``domain_name``'s ``train`` (from the artifact
    ``init_from``, if given) and evaluate it with its ``evaluate``: its metrics (and the
    baselines'), minutes, epochs, and the artifact."""
    registry = load_registry()
    domain = registry.domains[domain_name]()
    encoder = registry.encoders["local"](device="cpu")
    budget = (minutes if run.tuned else FROZEN_MINUTES) * 60
    config = replace(TrainConfig(**BASE), time_budget_s=budget, init_from=init_from, **run.config)
    request = train_request(domain, str(data), registry.heads["lstm"], encoder, config, work / run.name, work / "cache")
    started = time.monotonic()
    path = domain.train(request)
    seconds = time.monotonic() - started
    encoder.close()
    loaded = load_model(path, registry.heads)
    model_encoder = ModelEncoder(registry.encoders, "local", {"device": "cpu"}, loaded)
    base = ModelEncoder(registry.encoders, "local", {"device": "cpu"}, loaded, base=True)
    try:
        evaluation = eval_request(loaded, str(data), model_encoder, cache_dir=work / "cache", open_base_encoder=base)
        report = domain.evaluate(evaluation)
    finally:
        model_encoder.close()
        base.close()
    trained = loaded.manifest.metrics
    return {
        "metrics": report.metrics,
        "minutes": seconds / 60,
        "epochs": int(trained["epochs"]),
        "best_epoch": int(trained["best_epoch"]),
        "sentences": report.users,
        "path": str(path),
    }


def cell(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.3f} ({metrics[key + '_low']:.3f}-{metrics[key + '_high']:.3f})"


def row(label: str, metrics: dict, prefix: str, trained: str) -> str:
    f1 = " / ".join(f"{metrics[f'{prefix}test.f1_{c}']:.2f}" for c in ("negative", "neutral", "positive"))
    return (
        f"| {label} | {cell(metrics, prefix + 'test.accuracy')} | {cell(metrics, prefix + 'test.macro_f1')} "
        f"| {f1} | {trained} |"
    )


def render_level(level: str, results: dict[str, dict], minutes: float) -> str:
    first = next(iter(results.values()))
    lines = [
        "| model | accuracy (95% CI) | macro-F1 (95% CI) | F1 neg / neu / pos | epochs (best), train min |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in BASELINES:
        l2 = f" (L2 {first['metrics']['frozen-lr.test.l2']:g})" if name == "frozen-lr" else ""
        lines.append(row(label + l2, first["metrics"], f"{name}.", "-"))
    for run in RUNS:
        if run.name in results:
            result = results[run.name]
            trained = f"{result['epochs']} ({result['best_epoch']}), {result['minutes']:.1f}"
            lines.append(row(run.label, result["metrics"], "", trained))
    best = max(result["metrics"]["test.accuracy"] for result in results.values())
    lr = first["metrics"]["frozen-lr.test.accuracy"]
    return (
        f"### {level} ({first['sentences']} test sentences)\n\n" + "\n".join(lines) + "\n\n"
        f"Goal: accuracy >= {GOALS[level]:.2f} (fine-tuned FinBERT's published figure); the best trained model "
        f"here: {best:.3f} ({'met' if best >= GOALS[level] else 'not met'}); frozen MiniLM + LR: {lr:.3f}."
    )


def render(by_level: dict[str, dict[str, dict]], minutes: float) -> str:
    head = (
        f"Financial PhraseBank, its fixed split (80/10/10 by a seeded hash of each sentence, the same split at every "
        f"level). Every trained row: the `lstm` head (dim 64) through `temporec train --domain finance`, one torch "
        f"thread, early stopping on validation MRR; frozen: texts up to 256 tokens, {FROZEN_MINUTES:g} min, batch "
        f"128; tuned: {minutes:g} min each (epochs are cut by the budget), batch 32 in length buckets, texts up to "
        f"64 tokens, head lr 3e-3, encoder lr 5e-4 (LoRA), 1e-4 (top 2), 5e-5 (full). The CPU was shared with "
        "other work (4 processes on 2 cores), so the minutes are not a clean speed measurement. Numbers on the test "
        "split only; intervals: 95% bootstrap over its sentences.\n\n"
    )
    return head + "\n\n".join(render_level(level, results, minutes) for level, results in by_level.items())


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the PhraseBank directory")
    parser.add_argument("--levels", default=",".join(LEVELS), help=f"agreement levels (default {','.join(LEVELS)})")
    parser.add_argument("--only", default="", help=f"rows to train, of {','.join(r.name for r in RUNS)} (default all)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget of each tuned run (default 4)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--work", type=Path, default=None, help="where models go (default: a temporary directory)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(1)  # one core: the machine's other core is other work's
    only = set(filter(None, args.only.split(",")))
    unknown = only - {r.name for r in RUNS}
    if unknown:
        raise SystemExit(f"--only: {sorted(unknown)}; allowed: {', '.join(r.name for r in RUNS)}")
    started = time.monotonic()
    by_level: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        for level in args.levels.split(","):
            data = args.data / f"Sentences_{level}.txt"
            by_level[level] = {}
            for run in RUNS:
                if not only or run.name in only:
                    print(f"{level}: {run.name}", file=sys.stderr, flush=True)
                    by_level[level][run.name] = measure(run, data, args.minutes, work / level)
    body = render(by_level, args.minutes)
    results_file.record(args.out, "finance-phrasebank", "finance.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
