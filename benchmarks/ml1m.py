"""MovieLens-1M benchmark of the temporal heads (issue 3's table).

    .venv/bin/python benchmarks/ml1m.py --minutes 60      # the full table: hours
    .venv/bin/python benchmarks/ml1m.py --quick           # a smoke test: about a minute
    .venv/bin/python benchmarks/ml1m.py --runs ar,lstm    # some runs only

Data: ``../shared/data/ml-1m`` read by the video domain (5-core: 6,040 users, 3,416
items), item texts embedded once by the local encoder (all-MiniLM-L6-v2, cached),
histories of up to 200 events, leave-one-out, full ranking over the catalog with each
user's history masked.

Runs: the popularity baseline; ``ar``, ``lstm``, ``vae`` with hybrid items (text + id),
and variants of their settings (``RUNS`` below: dropout, depth, width, positions); ``ar``
with text-only and with id-only items; ``ar`` cold start with hybrid and with text-only
items (10% of the items removed from training, HR@10 on the test cases whose target is
one of them). Each trained run stops after ``--minutes`` of training (or earlier, by
early stopping on validation NDCG@10). The table, the exact command, the machine and the
training times go to ``benchmarks/RESULTS.md`` (``--quick``: under ``--out``).

Finished runs are kept in ``<out>/results.json`` and reused when the benchmark runs again
with the same settings (``--fresh``: run them again, e.g. after a code change); an
interrupted run resumes from its last epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from results_file import (
    RESULTS_SECTIONS,
    RESULTS_TITLE,
    machine,
    machine_line,
    source_revision,
    write_section,
)
from temporec.contract.registry import load_registry
from temporec.contract.types import Dataset
from temporec.data import k_core
from temporec.model.artifacts import load_model, read_manifest
from temporec.model.devices import resolve_device
from temporec.model.embedding_cache import cache_root, catalog_embeddings
from temporec.training import (
    TrainConfig,
    evaluate_cold_start,
    evaluate_popularity,
    hold_out_items,
    train,
    with_items,
)
from temporec.training.next_item import SCHEDULES
from temporec.training.splits import encode

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ml-1m"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DOMAIN = "video"
METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")

log = logging.getLogger("benchmarks.ml1m")


@dataclass(frozen=True)
class Run:
    name: str
    head: str
    items: str = "hybrid"  # see temporec.training.ITEM_REPRESENTATIONS
    options: dict = field(default_factory=dict)  # head options
    settings: dict = field(default_factory=dict)  # TrainConfig fields beside the command line's
    cold_fraction: float = 0.0  # > 0: a cold-start run


RUNS = (
    Run("ar", "ar", options={"layers": 2, "heads": 1, "dropout": 0.2}),
    # Every dropout at 0.1, as SASRec+ is configured (antklen/sasrec-bert4rec-recsys23):
    # ours drops 0.2 of the event vectors, then 0.2 again in the head.
    Run("ar-dropout-0.1", "ar", options={"layers": 2, "heads": 1, "dropout": 0.1}, settings={"dropout": 0.1}),
    # ar's validation NDCG@10 stays level from about 35 minutes on: the budget leaves room for depth.
    Run("ar-dropout-0.1-4-layers", "ar", options={"layers": 4, "heads": 1, "dropout": 0.1}, settings={"dropout": 0.1}),
    # The 4-block run was still improving at its last epochs: HSTU-large's depth.
    Run("ar-dropout-0.1-8-layers", "ar", options={"layers": 8, "heads": 1, "dropout": 0.1}, settings={"dropout": 0.1}),
    # SASRec's positions: the most recent event always at the same position.
    Run(
        "ar-dropout-0.1-positions-last",
        "ar",
        options={"layers": 2, "heads": 1, "dropout": 0.1, "positions": "last"},
        settings={"dropout": 0.1},
    ),
    Run("lstm", "lstm", options={"layers": 1, "dropout": 0.2}),
    # At width 64 lstm's validation NDCG@10 stays level for its last 50 epochs: a capacity limit.
    Run("lstm-wide", "lstm", options={"layers": 1, "dropout": 0.2}, settings={"dim": 128}),
    # Width did not help; depth, as GRU4Rec's deeper variants and SVAE's stacked encoder.
    Run("lstm-2-layers", "lstm", options={"layers": 2, "dropout": 0.2}),
    # KL weight 0.2 (SVAE's) held the validation NDCG@10 near 0.08 for 15 epochs (lstm: 0.156):
    # our KL sums 64 latent dimensions against one cross-entropy per position.
    Run("vae", "vae", options={"layers": 1, "dropout": 0.2, "kl_weight": 0.02, "anneal_steps": 2000}),
    # Item representations, each at the best hybrid run's settings (ar-dropout-0.1-4-layers).
    Run("ar-text", "ar", items="text", options={"layers": 4, "heads": 1, "dropout": 0.1}, settings={"dropout": 0.1}),
    Run("ar-ids", "ar", items="ids", options={"layers": 4, "heads": 1, "dropout": 0.1}, settings={"dropout": 0.1}),
    Run("ar-cold", "ar", options={"layers": 2, "heads": 1, "dropout": 0.2}, cold_fraction=0.1),
    Run("ar-text-cold", "ar", items="text", options={"layers": 2, "heads": 1, "dropout": 0.2}, cold_fraction=0.1),
)
#: What the Settings lines say of each run's machine (results.json keeps all of ``machine()``).
RUN_MACHINE_KEYS = ("cpu", "cores", "threads", "device", "gpu")

GOALS = {"ar": (0.34, 0.195), "lstm": (0.30, 0.17), "vae": (0.27, 0.15)}  # HR@10, NDCG@10
ANCHORS = (  # published ML-1M results under the same protocol: HR@10, NDCG@10
    ("SASRec+ (full cross-entropy)", 0.3152, 0.1821),
    ("BERT4Rec", 0.2843, 0.1537),
    ("HSTU-large", 0.3294, 0.1893),
    ("HSTU full-softmax reproduction", 0.3419, 0.1944),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help=f"the ml-1m folder (default {DATA})")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time per run (default 60)")
    parser.add_argument(
        "--runs", default="", help=f"comma-separated runs (default all: popularity,{','.join(r.name for r in RUNS)})"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke test: 500 users, 3 s per run, small models")
    parser.add_argument(
        "--fresh", action="store_true", help="run again runs whose results are stored (after a code change)"
    )
    parser.add_argument("--dim", type=int, default=64, help="model width (default 64)")
    parser.add_argument("--max-len", type=int, default=200, help="events of history read (default 200)")
    # Under a time budget on a CPU, more and smaller steps learn more per epoch: batches of
    # 64 at 2e-3 reached a validation NDCG@10 in 5 epochs that batches of 128 at 1e-3 needed 11 for.
    parser.add_argument("--batch-size", type=int, default=64, help="windows per step (default 64)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")
    # Lowering the rate as the budget runs out lets a run settle instead of hovering at a
    # constant rate's noise level (see the notes in RESULTS.md).
    parser.add_argument(
        "--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule (default cosine)"
    )
    parser.add_argument("--warmup-steps", type=int, default=100, help="learning-rate warm-up steps (default 100)")
    parser.add_argument(
        "--patience",
        type=int,
        default=0,
        help="epochs without a better validation NDCG@10 before stopping (default 0: none; under a cosine "
        "schedule a run improves until its budget ends, and the best epoch is tested either way)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default auto)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (default 0: one per core; on a busy machine 1 is faster)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="models, checkpoints, results.json (default: the temporec cache)"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help=f"the table (default {RESULTS}; --quick: <out>/RESULTS.md)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.dim, args.max_len, args.patience = 0.05, 32, 50, 2
    args.users = 500 if args.quick else 0
    args.out = args.out or cache_root() / "benchmarks" / ("ml1m-quick" if args.quick else "ml1m")
    args.results = args.results or (args.out / "RESULTS.md" if args.quick else RESULTS)
    known = {"popularity", *(run.name for run in RUNS)}
    args.runs = [name.strip() for name in args.runs.split(",") if name.strip()] or sorted(known, key=_run_order)
    unknown = sorted(set(args.runs) - known)
    if unknown:
        parser.error(f"--runs {','.join(unknown)}: unknown; known: {', '.join(sorted(known, key=_run_order))}")
    return args


#: The options that decide what a run measures (not where its files go), as (flag, attribute).
MEASURING_OPTIONS = (
    ("--minutes", "minutes"),
    ("--dim", "dim"),
    ("--max-len", "max_len"),
    ("--batch-size", "batch_size"),
    ("--lr", "lr"),
    ("--schedule", "schedule"),
    ("--warmup-steps", "warmup_steps"),
    ("--patience", "patience"),
    ("--seed", "seed"),
    ("--threads", "threads"),
    ("--device", "device"),
)


def reproducing_command(args: argparse.Namespace, name: str) -> str:
    """The command that measures run ``name`` again, every setting spelled out, so that
    it still does after a default changes."""
    command = [".venv/bin/python", "benchmarks/ml1m.py", "--runs", name]
    if args.quick:
        command.append("--quick")
    else:
        for flag, attribute in MEASURING_OPTIONS:
            value = getattr(args, attribute)
            command += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if args.data != DATA:
        command += ["--data", str(args.data)]
    return shlex.join(command)


def _run_order(name: str) -> int:
    names = ["popularity", *(run.name for run in RUNS)]
    return names.index(name) if name in names else len(names)  # runs no longer defined come last


# -- what is measured ------------------------------------------------------------------


def load_data(path: Path, users: int) -> tuple[Dataset, torch.Tensor, str]:
    """The 5-core data set (its first ``users`` users when > 0) and its text embeddings."""
    registry = load_registry()
    dataset = k_core(registry.domains[DOMAIN]().load_dataset(str(path)), 5)  # the protocol's 5-core
    if users:
        kept = dict(list(dataset.sequences.items())[:users])
        dataset = Dataset(f"{dataset.name} (first {users} users)", dataset.catalog, kept)
    encoder = registry.encoders["local"]()
    try:
        embeddings = catalog_embeddings(encoder, dataset.catalog)
    finally:
        encoder.close()
    return dataset, embeddings, encoder.model_id


def run_config(run: Run, args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig(
        dim=args.dim,
        max_len=args.max_len,
        epochs=10_000,  # the time budget and early stopping end a run
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        patience=args.patience or 10_000,
        seed=args.seed,
        head_options=dict(run.options),
        device=args.device,
        time_budget_s=args.minutes * 60,
        threads=args.threads,
    )
    return with_items(replace(config, **run.settings), run.items)


def train_run(run: Run, dataset: Dataset, embeddings: torch.Tensor, model_id: str, args) -> dict:
    """Train one run and measure it; cold-start runs train without their cold items."""
    registry = load_registry()
    config = run_config(run, args)
    split = hold_out_items(dataset, run.cold_fraction, args.seed) if run.cold_fraction else None
    seconds = {}

    curve = []

    def report(epoch: int, values: dict[str, float]) -> None:
        seconds["train"] = values["seconds"]
        curve.append([epoch, round(values["valid.ndcg@10"], 4), round(values["seconds"])])
        print(
            f"  {run.name} epoch {epoch}: loss {values['loss']:.4f}, valid NDCG@10 {values['valid.ndcg@10']:.4f}, "
            f"{values['seconds'] / 60:.1f} min",
            flush=True,
        )

    path = train(
        split.train if split else dataset,
        registry.heads[run.head],
        embeddings,
        domain=registry.domains[DOMAIN],
        encoder_name="local",
        encoder_model_id=model_id,
        out_dir=args.out / "models",
        config=config,
        on_epoch=report,
    )
    trained = read_manifest(path).metrics
    result = {
        "run": run.name,
        "head": run.head,
        "items": run.items,
        "metrics": {k: trained[f"test.{k}"] for k in METRICS},
        "popularity": {k: trained[f"popularity.test.{k}"] for k in METRICS},
        "epochs": int(trained["epochs"]),
        "best_epoch": int(trained["best_epoch"]),
        "train_seconds": seconds.get("train", 0.0),
        "curve": curve,  # [epoch, validation NDCG@10, seconds] of this invocation's epochs
        "config": asdict(config),
        "artifact": str(path),
    }
    if split:
        loaded = load_model(path, registry.heads)
        loaded.model.to(resolve_device(config.device))
        actions = loaded.manifest.actions
        result["cold_start"] = {
            "fraction": run.cold_fraction,
            "cold_items": len(split.cold_items),
            **evaluate_cold_start(loaded.model, dataset, split, actions, config.max_len),
        }
    return result


def popularity_run(dataset: Dataset) -> dict:
    registry = load_registry()
    seqs = encode(dataset, registry.domains[DOMAIN].actions)
    metrics = evaluate_popularity(seqs, "test", len(dataset.catalog))
    return {"run": "popularity", "head": "", "items": "", "metrics": {k: metrics[k] for k in METRICS}}


# -- the table -------------------------------------------------------------------------------


def render(results: dict[str, dict], context: dict) -> str:
    """The ML-1M section of RESULTS.md: the command, the machine, the data, the tables."""
    lines = [
        "## MovieLens-1M",
        "",
        f"Written by `benchmarks/ml1m.py` on {context['date']}; each run's command, machine and settings are listed",
        "under Settings below.",
        "",
        (
            f"Data: {context['data']}. Leave-one-out (the last event of each user is the test "
            "target, the one before it the validation target), full ranking over the catalog with the "
            "user's history masked. Each run trains until its time budget is spent (the epoch then running "
            "is cut short and validated) or until early stopping on validation NDCG@10; the best validation "
            "epoch is tested."
        ),
        "",
        "| run | head | items | "
        + " | ".join(m.upper() for m in METRICS)
        + " | epochs (best) | training min | goal HR@10 / NDCG@10 |",
        "|" + " --- |" * (len(METRICS) + 6),
    ]
    for name in sorted(results, key=_run_order):
        r = results[name]
        if "cold_start" in r:
            continue  # its test split lacks the cold items: it has a table of its own
        values = " | ".join(f"{r['metrics'][m]:.4f}" for m in METRICS)
        epochs = f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else ""
        minutes = f"{r['train_seconds'] / 60:.1f}" if "train_seconds" in r else ""
        lines.append(f"| {name} | {r['head']} | {r['items']} | {values} | {epochs} | {minutes} | {_goal(name, r)} |")
    cold = {name: r for name, r in results.items() if "cold_start" in r}
    if cold:
        lines += [
            "",
            "### Cold start",
            "",
            (
                "Items held out of training (every event of them removed); the model is tested on the full "
                "data's test cases whose target is such an item (cold) and on the others (warm). "
                "Popularity counts the training events, where cold items have none."
            ),
            "",
            "| run | cold items | cold cases | HR@10 cold | NDCG@10 cold | popularity HR@10 cold | warm cases | HR@10 warm |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, r in sorted(cold.items()):
            c = r["cold_start"]
            lines.append(
                f"| {name} | {c['cold_items']} ({c['fraction']:.0%}) | {c['cold.cases']:.0f} | {c['cold.hr@10']:.4f} | "
                f"{c['cold.ndcg@10']:.4f} | {c['popularity.cold.hr@10']:.4f} | {c['warm.cases']:.0f} | {c.get('warm.hr@10', float('nan')):.4f} |"
            )
    lines += [
        "",
        "### Published anchors (ML-1M, same protocol)",
        "",
        "| model | HR@10 | NDCG@10 |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {model} | {hr:.4f} | {ndcg:.4f} |" for model, hr, ndcg in ANCHORS]
    lines += ["", "### Settings", ""]
    for name in sorted(results, key=_run_order):
        r = results[name]
        if "config" in r:
            settings = {k: v for k, v in r["config"].items() if k not in ("epochs", "eval_batch_size")}
            commit = f"commit {r['commit']}" if "commit" in r else ""
            machine_used = machine_line(r.get("machine", {}), RUN_MACHINE_KEYS)
            measured = "; ".join(filter(None, (r.get("date"), commit, machine_used)))
            lines.append(f"- `{name}`: `{r.get('command', '')}` ({measured})")
            lines.append(f"  settings `{json.dumps(settings, sort_keys=True)}`")
    return "\n".join(lines) + "\n"


def _goal(name: str, result: dict) -> str:
    """The head's goal, for its runs with the hybrid items the goals are set for."""
    if result.get("head") not in GOALS or result.get("items") != "hybrid":
        return ""
    hr, ndcg = GOALS[result["head"]]
    met = result["metrics"]["hr@10"] >= hr and result["metrics"]["ndcg@10"] >= ndcg
    return f"{hr} / {ndcg}: {'met' if met else 'not met'}"


def stored_results(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    revision = source_revision()  # now: the files may change while the runs go on
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    dataset, embeddings, model_id = load_data(args.data, args.users)
    events = sum(map(len, dataset.sequences.values()))
    data = f"{dataset.name}: {len(dataset.sequences):,} users, {len(dataset.catalog):,} items, {events:,} events"
    print(data, flush=True)

    store = args.out / "results.json"
    results = {} if args.fresh else stored_results(store)
    fingerprint = dataset.fingerprint()
    for name in args.runs:
        run = next((r for r in RUNS if r.name == name), None)
        key = {
            "data": fingerprint,
            "config": asdict(run_config(run, args)) if run else {},
            "run": asdict(run) if run else {},
        }
        if results.get(name, {}).get("key") == key:
            print(f"{name}: reusing the stored result", flush=True)
            continue
        print(f"{name}: training for up to {args.minutes:g} min" if run else f"{name}: evaluating", flush=True)
        started = time.monotonic()
        result = train_run(run, dataset, embeddings, model_id, args) if run else popularity_run(dataset)
        command = reproducing_command(args, name)
        result.update(key=key, wall_seconds=time.monotonic() - started, command=command, date=time.strftime("%Y-%m-%d"))
        result.update(machine=machine(str(resolve_device(args.device))), commit=revision)
        # Re-read: another invocation may have stored runs meanwhile (runs can go in parallel).
        results = {**stored_results(store), name: result}
        store.write_text(json.dumps(results, indent=2) + "\n")
        measured = result.get(
            "cold_start", {"cold.hr@10": result["metrics"]["hr@10"], "cold.ndcg@10": result["metrics"]["ndcg@10"]}
        )
        which = "on cold items " if "cold_start" in result else ""
        print(f"{name}: HR@10 {which}{measured['cold.hr@10']:.4f}, NDCG@10 {measured['cold.ndcg@10']:.4f}", flush=True)

    # Every stored run of this data set, each with the command that measured it.
    results = stored_results(store) if store.is_file() else results
    chosen = {name: r for name, r in results.items() if r.get("key", {}).get("data") == fingerprint}
    table = render(chosen, {"date": time.strftime("%Y-%m-%d"), "data": data})
    write_section(args.results, "ml1m", table, RESULTS_TITLE, order=RESULTS_SECTIONS)
    print(table)
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
