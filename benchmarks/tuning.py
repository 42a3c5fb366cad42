"""Does the language model learn from behaviour? The tuning modes side by side on a
text-rich shop, at equal time budgets, on the same split.

    .venv/bin/python benchmarks/tuning.py                        # Amazon Office, 10 min a run, 2 at a time
    .venv/bin/python benchmarks/tuning.py --set amazon-beauty --minutes 30
    .venv/bin/python benchmarks/tuning.py --two-stages --minutes 15   # frozen, then tuned from it
    .venv/bin/python benchmarks/tuning.py --cold-start --minutes 7    # 10% of the items held out

Every row trains through ``train_request(...).fit`` (what ``temporec train`` runs) with the
``events`` domain and the ``ar`` head, one torch thread, and the same stopping rule
(validation NDCG@10, patience 10, the time budget); the rows differ in ``--tuning`` and in
how items are represented (text, ids, both). ``--two-stages`` compares the frozen encoder
with two-stage runs in the same budget: a frozen model trained for half of it at most (to its
early stop where that comes first), then the encoder tuned from it (``--init-from``) for the time left (section
``tuning-two-stages-<set>``). ``--cold-start`` trains every row without 10% of the items
(every event of them: ``temporec.training.cold_start``) and tests on the full data, the
cases whose target is a held-out item (cold) apart from the others (warm) (section
``tuning-cold-start-<set>``). Test: leave-one-out, full ranking, the history
masked, with a bootstrap interval over the users. Section ``tuning-<set>`` of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import results_file
from amazon import arguments, load_amazon, metric_cells, side_by_side, test_ranks
from temporec.contract.registry import load_registry
from temporec.model import read_manifest
from temporec.training import TrainConfig, cold_test_cases, hold_out_items, train_request
from temporec.training.ranking_metrics import summarize
from temporec.training.splits import encode, eval_split


@dataclass
class Run:
    name: str
    config: dict = field(default_factory=dict)  # TrainConfig fields over BASE
    first: dict | None = None  # a first stage's fields over BASE: the run starts from its model
    cold_fraction: float = 0.0  # > 0: trained without that share of the items (cold start)


BASE = dict(seed=0, threads=1, device="cpu")
TEXT, BOTH, IDS = {"use_ids": False}, {}, {"use_text": False}
RUNS = (
    Run("ids only", IDS),
    Run("ids only, started from the text (LLM2BERT4Rec)", {**IDS, "ids_from_text": True}),
    Run("text, frozen", TEXT),
    Run("text, adaptor", {**TEXT, "tuning": "adaptor"}),
    Run("text, lora", {**TEXT, "tuning": "lora"}),
    Run("text, top layer", {**TEXT, "tuning": "top"}),
    Run("text + ids, frozen", BOTH),
    Run("text + ids, adaptor", {**BOTH, "tuning": "adaptor"}),
    Run("text + ids, lora", {**BOTH, "tuning": "lora"}),
    Run("text + ids, frozen, ids unscaled (--no-scale-ids)", {**BOTH, "scale_ids": False}),
)
TWO_STAGES = (
    Run("text, frozen", TEXT),
    Run("text, frozen, then lora", {**TEXT, "tuning": "lora"}, first=TEXT),
    Run("text + ids, frozen", BOTH),
    Run("text + ids, frozen, then lora", {**BOTH, "tuning": "lora"}, first=BOTH),
)


COLD = 0.1  # the share of the items held out of training (issue 14)
COLD_START = (
    Run("ids only", IDS, cold_fraction=COLD),
    Run("text, frozen", TEXT, cold_fraction=COLD),
    Run("text, adaptor", {**TEXT, "tuning": "adaptor"}, cold_fraction=COLD),
    Run("text + ids, frozen", BOTH, cold_fraction=COLD),
    Run("text + ids, adaptor", {**BOTH, "tuning": "adaptor"}, cold_fraction=COLD),
    Run("text + ids, frozen, id dropout 0.5 (--id-dropout 0.5)", {**BOTH, "id_dropout": 0.5}, cold_fraction=COLD),
    Run(
        "text, frozen, the unseen items negatives too (--unseen-negatives)",
        {**TEXT, "unseen_negatives": True},
        cold_fraction=COLD,
    ),
    Run(
        "text + ids, frozen, the unseen items negatives too (--unseen-negatives)",
        {**BOTH, "unseen_negatives": True},
        cold_fraction=COLD,
    ),
)


def measure(run: Run, data: Path, minutes: float, work: str) -> dict:
    """One row, in its own process (one torch thread each, so two run side by side)."""
    torch.set_num_threads(1)
    registry = load_registry()
    full = dataset = load_amazon(data)
    held_out = hold_out_items(full, run.cold_fraction) if run.cold_fraction else None
    if held_out is not None:
        dataset = held_out.train  # the model never sees the cold items; it is tested on the full data
    config = replace(TrainConfig(**BASE), time_budget_s=minutes * 60, **run.config)
    domain = registry.domains["events"]()
    encoder = registry.encoders["local"](device="cpu")

    def fit(config: TrainConfig, out: Path) -> Path:  # what ``temporec train`` runs, on ``dataset``
        request = train_request(domain, str(data), registry.heads["ar"], encoder, config, out)
        return request.fit(dataset, domain.training_config(dataset, config))

    started = time.monotonic()
    if run.first is not None:  # the first stage's model, then the time left from it
        first = replace(TrainConfig(**BASE), time_budget_s=minutes * 30, **run.first)  # half the minutes at most
        first_path = fit(first, Path(work) / f"{run.name}, first stage")
        left = minutes * 60 - (time.monotonic() - started)
        config = replace(config, time_budget_s=max(left, 1.0), init_from=str(first_path))
    path = fit(config, Path(work) / run.name)
    manifest = read_manifest(path)
    result = {
        "ranks": test_ranks(path, full).numpy(),
        "epochs": int(manifest.metrics["epochs"]),
        "best_epoch": int(manifest.metrics["best_epoch"]),
        "minutes": (time.monotonic() - started) / 60,
    }
    if held_out is not None:
        test = eval_split(encode(full, manifest.actions), "test")
        result.update(cold=cold_test_cases(full, held_out, test), cold_items=len(held_out.cold_items))
    return result


def render(runs: dict[str, dict], set_name: str, minutes: float, rows: tuple[Run, ...] = RUNS) -> str:
    lines = [
        "| items | HR@10 (95% CI) | NDCG@10 (95% CI) | NDCG@10 / frozen's | epochs (best) | minutes |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ndcg = {name: summarize(result["ranks"])["ndcg@10"] for name, result in runs.items()}
    for run in rows:
        result = runs[run.name]
        cells = metric_cells(result["ranks"])
        frozen = "text + ids, frozen" if run.name.startswith("text + ids") else "text, frozen"
        ratio = f"{ndcg[run.name] / ndcg[frozen]:.2f}" if run.name.startswith("text") else ""
        lines.append(
            f"| {run.name} | {' | '.join(cells)} | {ratio} | {result['epochs']} ({result['best_epoch']}) "
            f"| {result['minutes']:.1f} |"
        )
    defaults = TrainConfig()
    return (
        f"Data: `{set_name}`. Each row: `ar` (2 blocks), {minutes:g} min, one torch thread, validation NDCG@10 "
        f"with patience 10; the encoder all-MiniLM-L6-v2 (frozen: texts up to 256 tokens; lora and top: "
        f"{defaults.text_max_length}, rank {defaults.lora_rank} on query and value, encoder lr "
        f"{defaults.encoder_lr:g}, {defaults.tuned_items_per_step} texts re-encoded a step). Test: leave-one-out, "
        "full ranking, the history masked; intervals: bootstrap over the test users."
        + (TWO_STAGE_NOTE if rows is TWO_STAGES else "")
        + "\n\n"
        + "\n".join(lines)
    )


def render_cold_start(runs: dict[str, dict], set_name: str, minutes: float) -> str:
    """Cold cases against warm ones, each row's own model (trained without the cold items)."""
    lines = [
        "| items | cold HR@10 (95% CI) | cold NDCG@10 (95% CI) | warm HR@10 (95% CI) | cold / warm HR@10 "
        "| epochs (best) | minutes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in COLD_START:
        result = runs[run.name]
        cold, warm = result["ranks"][result["cold"]], result["ranks"][~result["cold"]]
        ratio = summarize(cold)["hr@10"] / max(summarize(warm)["hr@10"], 1e-12)
        lines.append(
            f"| {run.name} | {' | '.join(metric_cells(cold))} | {metric_cells(warm, ('hr@10',))[0]} | {ratio:.2f} "
            f"| {result['epochs']} ({result['best_epoch']}) | {result['minutes']:.1f} |"
        )
    some = next(iter(runs.values()))
    cases, n_items = int(some["cold"].sum()), len(some["cold"])
    return (
        f"Data: `{set_name}`. Each row: `ar` (2 blocks), {minutes:g} min, one torch thread, validation NDCG@10 "
        f"with patience 10, trained without {some['cold_items']:,} items ({COLD:.0%} of the catalog, every event of "
        "them; temporec.training.cold_start.hold_out_items, seed 0), then tested on the full data: leave-one-out, "
        f"full ranking, the history masked; cold: the {cases:,} test cases (of {n_items:,}) whose target is a held-out "
        "item; warm: the others. A model of ids alone has only the held-out items' untrained ids; one that reads text "
        "embeds theirs. The loss ranks each target among the items the training data has (TrainConfig.unseen_negatives "
        "off) but in the rows marked --unseen-negatives, whose softmax pushes the held-out items down as negatives. "
        "Intervals: bootstrap over the test users. Goal (issue 14): cold HR@10 at least half the warm."
        + "\n\n"
        + "\n".join(lines)
    )


TWO_STAGE_NOTE = (
    ' A row "frozen, then lora" trains the frozen row\'s model for half the minutes at most (less where it stops '
    "early), then tunes the encoder from it (`--init-from`) for the rest of the row's minutes; its epochs (best) are the second stage's, 0 where no "
    "tuned epoch beat the model it started from."
)


def add_mode_flags(parser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--two-stages", action="store_true", help="frozen against frozen-then-tuned rows (section tuning-two-stages-*)"
    )
    mode.add_argument(
        "--cold-start",
        action="store_true",
        help=f"rows trained without {COLD:.0%} of the items, tested on them (section tuning-cold-start-*)",
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, 10.0, argv, flags=add_mode_flags)
    started = time.monotonic()
    if args.cold_start:
        section = f"tuning-cold-start-{args.set}"
        body = render_cold_start(side_by_side(measure, COLD_START, args), args.set, args.minutes)
    else:
        rows, section = (
            (TWO_STAGES, f"tuning-two-stages-{args.set}") if args.two_stages else (RUNS, f"tuning-{args.set}")
        )
        body = render(side_by_side(measure, rows, args), args.set, args.minutes, rows)
    results_file.record(args.out, section, "tuning.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
