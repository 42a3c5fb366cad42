"""Domain benchmarks: every domain trains on its real data and is evaluated with its
field's metrics, its baselines ranked the same way in the same run.

    .venv/bin/python benchmarks/domains.py                    # every section
    .venv/bin/python benchmarks/domains.py --only retail      # sections whose name starts so

Sections: retail-taobao, news-nemig-en, news-nemig-de, news-mind-small-sample,
customer_service-stackfaq, customer_service-banking77. Each writes its table, the
command and the settings into ``benchmarks/RESULTS.md`` between its own markers,
replacing the section's previous numbers and keeping the others. Every trained model is
also served once through ``RecommenderService`` (the path a gRPC request takes), and
the benchmark checks that the service's top item is the one the evaluation ranked first.
Data comes from ``../shared/data`` (see its SOURCES.md); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import results_file
from temporec.contract.registry import load_registry
from temporec.contract.types import Dataset, Event, Query
from temporec.model.artifacts import LoadedModel, load_model
from temporec.model.embedding_cache import catalog_embeddings
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig, train, train_request
from temporec.training.protocols import (
    Scorer,
    artifact_scorer,
    evaluate_impressions,
    evaluate_next_item,
    evaluate_replies,
    handoff_rates,
    rule_mask,
)
from temporec_plugins.domains.customer_service.training import (
    embed_texts,
    reply_cases,
    turn_texts,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HANDOFF_THRESHOLDS = (0.3, 0.5, 0.7)
#: The retail rows' settings (Taobao: 100 events a user), here and in peers.py's Taobao tables.
RETAIL_SETTINGS = {"dim": 64, "max_len": 50, "batch_size": 32, "lr": 2e-3}

log = logging.getLogger("benchmarks.domains")


# -- shared ---------------------------------------------------------------------------


class Bench:
    """What every section needs: the options, the plugins, the encoder, and a clock."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.registry = load_registry()
        self.heads = [self.registry.heads[name] for name in args.heads]
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = self.registry.encoders["local"](device=self.args.device)
        return self._encoder

    def config(self, **fields) -> TrainConfig:
        return TrainConfig(device=self.args.device, time_budget_s=self.args.time_budget, seed=self.args.seed, **fields)

    def models_dir(self, *parts: str) -> Path:
        return Path(self.args.models, *parts)

    def load(self, path: Path) -> LoadedModel:
        return load_model(path, self.registry.heads)


def table(results: dict[str, dict[str, float]], columns: list[str]) -> str:
    """One row per ranker; a metric with a bootstrap interval (``<metric>_low`` /
    ``_high``) shows it beside the value."""
    lines = ["| ranker | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(metrics, c) for c in columns) + " |")
    return "\n".join(lines)


def cell(metrics: dict[str, float], column: str) -> str:
    value = f"{metrics.get(column, float('nan')):.4f}"
    if f"{column}_sd" in metrics:
        value += f" ± {metrics[column + '_sd']:.4f}"
    elif f"{column}_low" in metrics:
        value += f" ({metrics[column + '_low']:.4f}-{metrics[column + '_high']:.4f})"
    return value


def served(path: Path, history: list[Event], expected_top: str, candidates: list[str] | None = None, **query) -> str:
    """Serve one request with the artifact at ``path`` and compare its top item with the
    evaluation's; returns a line for the results."""

    async def ask():
        service = RecommenderService(load_registry(), path.parent, device="cpu")
        await service.start()
        try:
            manifest = next(iter(service.models.values())).loaded.manifest
            q = Query(manifest.domain, history, head=manifest.head, candidates=candidates or [], k=5, **query)
            return await service.recommend(q)
        finally:
            await service.close()

    answer = asyncio.run(ask())
    top = answer.items[0].item_id if answer.items else "(none)"
    agrees = "agrees with" if top == expected_top else "DIFFERS from"
    return (
        f"`Recommend` served by {answer.head} ({answer.model_version}): {len(answer.items)} items, "
        f"rules {answer.rules_applied or '[]'}; its top item {agrees} the evaluation's"
    )


def top_item(scorer: Scorer, history: list[Event], catalog, allowed: torch.Tensor | None = None) -> str:
    scores = scorer([history])[0]
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return catalog.item_ids[int(scores.argmax())]


def settings(loaded: LoadedModel, seconds: float) -> str:
    """The training settings that matter here, and how long and far training went."""
    config, metrics = loaded.manifest.training, loaded.manifest.metrics
    keep = ("dim", "max_len", "batch_size", "lr", "negatives", "use_text", "use_ids", "item_features", "target_weights")
    keep += ("repeat_aware",) * bool(config.get("repeat_aware"))
    keep += ("passed_over_weight",) * bool(config.get("passed_over_weight"))
    shown = ", ".join(f"{k}={config[k]}" for k in keep)
    return (
        f"{shown}, time budget {config['time_budget_s']:.0f} s; trained {metrics['epochs']:.0f} epochs "
        f"(best {metrics['best_epoch']:.0f}) in {seconds:.0f} s"
    )


# -- retail ---------------------------------------------------------------------------


def retail_taobao(bench: Bench) -> str:
    domain_cls = bench.registry.domains["retail"]
    domain = domain_cls()
    dataset = domain.load_dataset(str(bench.args.data / "taobao-userbehavior"))
    base = bench.config(**RETAIL_SETTINGS, epochs=40, patience=3)
    weighted = {"target_weights": dict(domain.target_weights), "repeat_aware": False}
    objectives = {
        "uniform targets": {"target_weights": {}, "repeat_aware": False},
        "purchase-weighted targets": weighted,
        "purchase-weighted, repeat-aware": {**weighted, "repeat_aware": True},
        "purchase-weighted, repeat-aware, with ids": {**weighted, "repeat_aware": True, "use_ids": True},
    }
    parts = [
        f"Data: `taobao-userbehavior` ({len(dataset.sequences)} users, {len(dataset.catalog)} items, "
        f"{sum(map(len, dataset.sequences.values()))} events, no item text). Items are represented by category "
        "embeddings and, where a row says use_ids=True, id embeddings; sampled softmax over 1,024 uniform "
        "negatives. Leave-one-out: each user's last event is the test target, ranked against the whole catalog with the retail rules applied (purchased items masked; "
        "viewed and carted items stay, as a shop shows them again). Baselines: `popularity` (counts over the test "
        "histories) and `recent` (the history's items, latest first, then popularity)."
    ]
    columns = ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"]
    for task, data in (("next item", dataset), ("next purchase", domain.purchase_dataset(dataset))):
        cases = domain.next_item_cases(data)
        rankers = domain.baselines(data, cases)
        notes = []
        for head in bench.heads:
            for objective, fields in objectives.items():
                # the domain fits its defaults to the row's choices, which then stand (an
                # empty target_weights would otherwise become the domain's)
                config = replace(domain.training_config(data, replace(base, **fields)), **fields)
                started = time.monotonic()
                path = train(
                    data,
                    head,
                    torch.zeros(len(data.catalog), 0),
                    domain=domain_cls,
                    encoder_name="local",
                    encoder_model_id="(none: ids and categories)",
                    out_dir=bench.models_dir(
                        "retail", task.replace(" ", "-"), head.name, objective.replace(", ", "-").replace(" ", "-")
                    ),
                    config=config,
                )
                name = f"{head.name}, {objective}"
                loaded = bench.load(path)
                rankers[name] = artifact_scorer(loaded)
                notes.append(f"- {name}: {settings(loaded, time.monotonic() - started)}")
                case = cases[0]
                expected = top_item(
                    rankers[name], case.history, data.catalog, rule_mask(domain, case.history, data.catalog)
                )
                notes.append(f"  - {served(path, case.history, expected)}")
        results = evaluate_next_item(rankers, cases, data.catalog, domain)
        parts.append(f"### {task} ({len(cases)} users)\n\n{table(results, columns)}\n\n" + "\n".join(notes))
    return "\n\n".join(parts)


# -- news -----------------------------------------------------------------------------


def news(bench: Bench, folder: str) -> str:
    domain_cls = bench.registry.domains["news"]
    domain = domain_cls()
    data = domain.load_news(bench.args.data / folder)
    split = domain.split(data)
    dataset = Dataset(data.name, split.catalog, split.train)
    embeddings = catalog_embeddings(bench.encoder, data.catalog)
    rankers = domain.baselines(data, split, embeddings)
    usable_users = sum(1 for events in split.train.values() if len(events) >= 4)
    parts = [
        f"Data: `{folder}` ({data.layout} layout: {len(data.catalog)} articles, {len(data.impressions)} impressions, "
        f"{len({i.user for i in data.impressions})} users; {data.dropped} history/impression ids without a news row "
        f"dropped). Test: {len(split.test)} impressions ("
        + ("MIND's dev part" if any(i.part == "dev" for i in data.impressions) else "each user's last")
        + f"); training: the click histories before them ({usable_users} users with the 4+ events training needs). "
        "Articles are represented by their text (all-MiniLM-L6-v2, frozen), the domain's default, and, in the last "
        "row, by id embeddings too (a study's fixed article pool recurs, which real news does not). "
        "Rows: `clicks alone` trains on the clicks as 0.1 did; `impressions` also ranks each click of a training "
        "impression against the articles shown with it and not clicked (`passed_over_weight` 20, the news default); "
        "`click rate` adds each article's click-rate tenth in the training impressions as a feature (the default). "
        "Metrics as in MIND, over each impression's candidates; with several seeds, a model's row shows each metric's "
        "mean ± standard deviation over them, else 95% bootstrap intervals over impressions. Baselines: `popularity` "
        "(training clicks), `click-rate` (clicks per showing in the training impressions, smoothed), `recency` (newest "
        "article first), `bm25` (history texts against each candidate), `frozen-encoder` (cosine to the history's "
        "recency-weighted mean embedding)."
    ]
    notes, trained = [], {}
    seeds = range(bench.args.seed, bench.args.seed + bench.args.seeds)
    if usable_users:
        for head, (variant, fields) in ((h, v) for h in bench.heads for v in NEWS_VARIANTS.items()):
            name = f"{head.name}, {variant}"
            for seed in seeds:
                base = replace(
                    bench.config(dim=64, max_len=50, batch_size=64, lr=1e-3, epochs=20, patience=3), seed=seed
                )
                config = replace(domain.training_config(dataset, base), **fields)
                started = time.monotonic()
                path = train(
                    dataset,
                    head,
                    embeddings,
                    domain=domain_cls,
                    encoder_name="local",
                    encoder_model_id=bench.encoder.model_id,
                    out_dir=bench.models_dir("news", folder, head.name, variant.replace(" ", ""), str(seed)),
                    config=config,
                )
                loaded = bench.load(path)
                trained.setdefault(name, []).append(artifact_scorer(loaded))
            notes.append(f"- {name} (seed {seed}): {settings(loaded, time.monotonic() - started)}")
            case = next(c for c in split.test if c.candidates)
            scores = trained[name][-1]([case.history])[0]
            allowed = [c for c in case.candidates if c not in {e.item_id for e in case.history}]
            expected = max(allowed, key=lambda c: float(scores[data.catalog.index[c]]))
            notes.append(f"  - {served(path, case.history, expected, candidates=case.candidates)}")
    results, skipped = evaluate_impressions(rankers, split.test, data.catalog)
    for name, scorers in trained.items():
        results[name] = over_seeds(
            [evaluate_impressions({name: s}, split.test, data.catalog)[0][name] for s in scorers]
        )
    parts.append(
        f"{table(results, ['auc', 'mrr', 'ndcg@5', 'ndcg@10'])}\n\n"
        f"{len(split.test) - skipped} impressions scored ({skipped} without both a click and a non-click skipped).\n"
        + "\n".join(notes)
    )
    return "\n\n".join(parts)


# -- customer service -----------------------------------------------------------------


def customer_service(bench: Bench, folder: str, metric_names: list[str]) -> str:
    domain_cls = bench.registry.domains["customer_service"]
    domain = domain_cls()
    data = domain.load_conversations(bench.args.data / folder)
    encoder = bench.encoder
    items = catalog_embeddings(encoder, data.catalog)
    vectors = embed_texts(encoder, turn_texts(data))
    rankers = domain.baselines(data, items, vectors.__getitem__)
    cases = reply_cases(data.test)
    parts = [
        f"Data: `{folder}` ({len(data.catalog)} replies; conversations: {len(data.train)} train, {len(data.valid)} "
        f"valid, {len(data.test)} test; one user turn each). Replies are ranked for each test conversation. "
        "Baselines: `popularity`, `bm25` (user turns against reply texts), `frozen-encoder` (cosine between "
        "all-MiniLM-L6-v2 embeddings, later turns weighing more). Trained: the head with a learnt projection of "
        "the frozen embeddings and reply id embeddings (`temporec_plugins.domains.customer_service.training`)."
    ]
    notes, handoff = [], []
    base = bench.config(
        dim=128,
        max_len=16,
        batch_size=16 if len(data.train) < 2000 else 64,
        lr=3e-3,
        epochs=30,
        patience=5,
        dropout=0.1,
    )
    for head in bench.heads:
        started = time.monotonic()
        # as `temporec train --domain customer_service` does; the embeddings come from the cache
        out_dir = bench.models_dir("customer_service", folder, head.name)
        path = domain.train(train_request(domain, str(bench.args.data / folder), head, encoder, base, out_dir))
        loaded = bench.load(path)
        rankers[head.name] = artifact_scorer(loaded, vectors.__getitem__)
        notes.append(f"- {head.name}: {settings(loaded, time.monotonic() - started)}")
        case = cases[0]
        expected = top_item(rankers[head.name], case.turns, data.catalog)
        notes.append(f"  - {served(path, case.turns, expected)}")
        handoff.append(_handoff_rows(head.name, rankers[head.name], cases, data.catalog, domain))
    results = evaluate_replies(rankers, cases, data.catalog)
    frozen = results["frozen-encoder"]
    gains = [
        f"- {head.name} over the frozen encoder: "
        + ", ".join(f"{m} {results[head.name][m] - frozen[m]:+.4f}" for m in metric_names)
        for head in bench.heads
    ]
    parts.append(f"{table(results, metric_names)}\n\n" + "\n".join(gains + notes))
    parts.append(
        "Hand-off: the share of test conversations answered at each confidence threshold (the top reply's softmax "
        "probability, answers of one StackFAQ thread counted together; below it the conversation goes to a human), "
        "and the accuracy@1 of those answered.\n\n"
        "| head | threshold | answered | accuracy@1 answered |\n| --- | ---: | ---: | ---: |\n" + "\n".join(handoff)
    )
    return "\n\n".join(parts)


def _handoff_rows(name: str, scorer: Scorer, cases, catalog, domain) -> str:
    scores = torch.cat([scorer([c.turns for c in cases[i : i + 256]]) for i in range(0, len(cases), 256)])
    right = torch.tensor([catalog.item_ids[int(row.argmax())] in case.replies for row, case in zip(scores, cases)])
    confidence = domain.confidence(scores, catalog)
    rows = []
    for threshold in HANDOFF_THRESHOLDS:
        rates = handoff_rates(confidence, right, threshold)
        rows.append(f"| {name} | {threshold} | {rates['answered']:.3f} | {rates['accuracy@1.answered']:.4f} |")
    return "\n".join(rows)


#: the news rows: the domain's training, and what it is measured against
NEWS_VARIANTS = {
    "text, clicks alone": {"passed_over_weight": 0.0, "item_features": []},  # as 0.1 trained
    "text, impressions": {"item_features": []},  # + the choice among each impression's articles
    "text + click rate": {},  # the domain's default: + each article's click-rate tenth as a feature
    "text + click rate + ids": {"use_ids": True},
}


def over_seeds(runs: list[dict[str, float]]) -> dict[str, float]:
    """One row from the same model trained with several seeds: each metric's mean and, with
    more than one seed, its standard deviation (``<metric>_sd``); one seed keeps its intervals."""
    if len(runs) == 1:
        return runs[0]
    keys = [k for k in runs[0] if not k.endswith(("_low", "_high"))]
    row = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    row.update({f"{k}_sd": float(np.std([r[k] for r in runs], ddof=1)) for k in keys})
    return row


# -- the results file -----------------------------------------------------------------

SECTIONS: dict[str, Callable[[Bench], str]] = {
    "retail-taobao": retail_taobao,
    "news-nemig-en": lambda bench: news(bench, "nemig/en"),
    "news-nemig-de": lambda bench: news(bench, "nemig/de"),
    "news-mind-small-sample": lambda bench: news(bench, "mind-small-sample"),
    "customer_service-stackfaq": lambda bench: customer_service(bench, "stackfaq", ["p@1", "p@3", "mrr"]),
    "customer_service-banking77": lambda bench: customer_service(
        bench, "banking77", ["accuracy@1", "accuracy@3", "mrr"]
    ),
}


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or add) the section ``name`` of the shared results file."""
    results_file.write_section(path, name, body, results_file.RESULTS_TITLE, order=results_file.RESULTS_SECTIONS)


def header(name: str, argv: list[str], seconds: float) -> str:
    command = " ".join(["python benchmarks/domains.py", *argv])
    machine = results_file.machine_line(results_file.machine("cuda:0" if torch.cuda.is_available() else "cpu"))
    return f"## {name}\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}, {machine}; section took {seconds / 60:.1f} min)\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="run the sections whose names start with these")
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "benchmarks", help="where trained models go")
    parser.add_argument("--heads", nargs="+", default=["lstm"], help="heads to train (default lstm)")
    parser.add_argument("--time-budget", type=float, default=300.0, help="seconds of training per model (default 300)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", type=int, default=1, help="news: train each model with this many seeds from --seed (mean ± sd)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.data.is_dir():
        print(f"no shared data at {args.data}: nothing to benchmark", file=sys.stderr)
        return 1
    bench = Bench(args)
    chosen = [name for name in SECTIONS if not args.only or any(name.startswith(p) for p in args.only)]
    for name in chosen:
        log.info("section %s", name)
        started = time.monotonic()
        body = SECTIONS[name](bench)
        shown = argv if argv is not None else sys.argv[1:]
        write_section(args.out, name, header(name, shown, time.monotonic() - started) + "\n" + body)
        log.info("section %s written to %s", name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
