"""Which temporal head? ``hstu`` beside ``ar`` on a shop's purchase sequences, at equal time
budgets, on the same split.

    .venv/bin/python benchmarks/heads.py --set amazon-beauty --minutes 8   # 2 rows at a time
    .venv/bin/python benchmarks/heads.py                                     # Amazon Office

The rows run in pairs in this order (``ar`` beside ``hstu``), so that each pair shares
the machine's conditions. Items are ids only (as HSTU's and SASRec's papers train them), so the rows differ in the
head and its options alone. Every row trains through ``train`` with the ``events`` domain,
one torch thread, and the same stopping rule (validation NDCG@10, patience 10, the time
budget). Test: leave-one-out, full ranking, the history masked, with a bootstrap interval
over the users. Section ``heads-<set>`` of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import results_file
from amazon import arguments, fit_ids_only, load_amazon, metric_cells, side_by_side
from temporec.training import TrainConfig
from temporec.training.ranking_metrics import summarize


@dataclass
class Run:
    name: str
    head: str
    why: str
    head_options: dict = field(default_factory=dict)


BASE = dict(use_text=False, seed=0, threads=1, device="cpu")
RUNS = (
    Run("ar", "ar", "the default head, pre-norm blocks"),
    Run("hstu", "hstu", "pointwise attention, position and time biases"),
    Run("ar, SASRec's block", "ar", "post-norm, MLP as wide as the model (sasrec-gap's best)", {"norm": "post", "mlp_ratio": 1}),
    Run("hstu, positions only", "hstu", "no time bias: what the timestamps add", {"time_buckets": 0}),
)  # fmt: skip


def measure(run: Run, data: Path, minutes: float, work: str) -> dict:
    """One row, in its own process (one torch thread each, so two run side by side)."""
    torch.set_num_threads(1)
    config = replace(TrainConfig(**BASE), time_budget_s=minutes * 60, head_options=run.head_options)
    started = time.monotonic()
    ranks, trained = fit_ids_only(load_amazon(data), run.head, config, Path(work) / run.name)
    return {"ranks": ranks.numpy(), "minutes": (time.monotonic() - started) / 60, **trained}


def render(runs: dict[str, dict], set_name: str, minutes: float) -> str:
    lines = [
        "| head | why this row | HR@10 (95% CI) | NDCG@10 (95% CI) | NDCG@10 / ar's | epochs (best) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    ar = summarize(runs["ar"]["ranks"])["ndcg@10"]
    for run in RUNS:
        result = runs[run.name]
        cells = metric_cells(result["ranks"])
        lines.append(
            f"| {run.name} | {run.why} | {' | '.join(cells)} | {summarize(result['ranks'])['ndcg@10'] / ar:.2f} "
            f"| {result['epochs']} ({result['best_epoch']}) |"
        )
    return (
        f"Data: `{set_name}`, item ids only. Each row: {minutes:g} min, one torch thread, validation NDCG@10 with "
        "patience 10, the heads' default options unless the row says otherwise. Test: leave-one-out, full "
        "ranking, the history masked; intervals: bootstrap over the test users.\n\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, 8.0, argv)
    started = time.monotonic()
    runs = side_by_side(measure, RUNS, args)
    body = render(runs, args.set, args.minutes)
    results_file.record(args.out, f"heads-{args.set}", "heads.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
