"""``temporec experiments report NAME``: an A/B experiment's report, read from the store
the configuration names (docs/realtime.md)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from temporec.contract.errors import FailedPrecondition, NotFound, allowed
from temporec.contract.registry import load_registry
from temporec.serving.config import load_config, resolve_experiments
from temporec.serving.experiment_report import cumulative, format_report, report
from temporec.serving.history import open_store


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("experiments", help="A/B experiments between models: their reports")
    commands = parser.add_subparsers(dest="experiments_command", required=True, metavar="COMMAND")
    reporting = commands.add_parser(
        "report",
        help="per arm: users, exposures, outcomes, rate, and the lift over the control with its 95%% CI",
    )
    reporting.add_argument("name", help="the experiment, as in [experiments.NAME]")
    reporting.add_argument("--config", required=True, metavar="FILE", help="the server's TOML file")
    reporting.add_argument(
        "--plot", metavar="FILE.png", type=Path, help="also plot the cumulative lift over time (needs matplotlib)"
    )
    reporting.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.name not in config.experiments:
        raise NotFound(f"experiment {args.name!r} is not in {args.config}; configured: {allowed(config.experiments)}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise FailedPrecondition("--plot needs matplotlib: pip install 'temporec[plot]'")
    registry = load_registry()
    domains = {name: cls() for name, cls in registry.domains.items()}
    chosen = {args.name: config.experiments[args.name]}
    experiment = resolve_experiments(chosen, domains, registry.heads, registry.encoders)[args.name]
    store = open_store(registry, config.store, config.store_max_events, config.store_retention_days)
    if store is None:
        raise FailedPrecondition(f"{args.config} names no store; experiments log their exposures in it")
    try:
        exposures = store.exposures(experiment.name)
        users = sorted({e.user_id for e in exposures})
        histories = {user: store.history(user, store.settings.max_events) for user in users}
    finally:
        store.close()
    print(format_report(experiment, report(experiment, exposures, histories)))
    if args.plot:
        plot(args.plot, experiment, cumulative(experiment, exposures, histories))
        print(f"wrote {args.plot}")
    return 0


def plot(path: Path, experiment, series) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime, timezone

    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    times = [datetime.fromtimestamp(t, timezone.utc) for t, _ in series]
    for arm in experiment.arms:
        if arm.control:
            continue
        rows = [next(r for r in rows if r.arm == arm.name) for _, rows in series]
        axes.plot(times, [r.lift * 100 for r in rows], label=arm.name)
        axes.fill_between(times, [r.low * 100 for r in rows], [r.high * 100 for r in rows], alpha=0.2)
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_ylabel(f"lift over {experiment.control.name!r} (percentage points)")
    axes.set_title(f"experiment {experiment.name!r}: cumulative lift, 95% CI")
    axes.legend()
    figure.autofmt_xdate()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
