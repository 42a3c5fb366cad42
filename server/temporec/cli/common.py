"""What several commands share: choosing a registered component, the encoder flags,
``name=value`` option flags, and the metrics table."""

from __future__ import annotations

import argparse
import json

from temporec.contract.errors import InvalidArgument, NotFound, allowed


def add_encoder_arguments(parser, help_name: str, default: str) -> None:
    """The text-encoder flags that ``train`` and ``eval`` share."""
    encoder = parser.add_argument_group("text encoder")
    encoder.add_argument("--encoder", default=default, help=help_name)
    encoder.add_argument(
        "--encoder-model",
        default="",
        metavar="MODEL",
        help="the encoder's 'model' option (local: a model directory; default its bundled all-MiniLM-L6-v2)",
    )
    encoder.add_argument(
        "--encoder-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="encoder option, e.g. url=triton:8001 for the triton encoder; VALUE is JSON or text (repeatable)",
    )
    encoder.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="embedding cache (default $TEMPOREC_CACHE_DIR or ~/.cache/temporec)",
    )


def encoder_options(args: argparse.Namespace) -> dict:
    """The keyword options for the encoder from ``--encoder-option`` and ``--encoder-model``."""
    options = parse_options(args.encoder_option, "--encoder-option")
    if args.encoder_model:
        options["model"] = args.encoder_model
    return options


def parse_options(pairs: list[str], flag: str) -> dict:
    """``KEY=VALUE`` strings as a dict; VALUE is read as JSON when it parses, else as text."""
    options = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise InvalidArgument(f"{flag} {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def pick(table: dict[str, type], name: str, kind: str) -> type:
    """The registered class ``name`` of ``table``, or NotFound naming ``--<kind>`` and the choices."""
    if name not in table:
        raise NotFound(f"--{kind} {name!r} is not installed; installed: {allowed(table)}")
    return table[name]


def metrics_table(metrics: dict[str, float], name: str = "model") -> str:
    """The metrics as a table: one row per split and ranker, one column per metric.

    Keys are ``<split>.<metric>`` for the model (shown as ``name``) and
    ``<ranker>.<split>.<metric>`` for the baselines; keys without a split
    (``best_epoch``) are left out. Splits keep their order, the model first in each.
    """
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) in (2, 3):
            ranker, split, metric = parts if len(parts) == 3 else (name, *parts)
            rows.setdefault((split, ranker), {})[metric] = value
    splits = list(dict.fromkeys(split for split, _ in rows))
    order = sorted(rows, key=lambda row: (splits.index(row[0]), row[1] != name))
    columns = list(dict.fromkeys(metric for row in order for metric in rows[row]))
    split_width = max([6, *(len(split) for split in splits)])
    ranker_width = max([12, *(len(ranker) for _, ranker in order)])
    widths = [max(8, len(column)) for column in columns]
    header = f"{'split':<{split_width}} {'ranker':<{ranker_width}} "
    lines = [header + " ".join(f"{column.upper():>{w}}" for column, w in zip(columns, widths))]
    for split, ranker in order:
        values = rows[(split, ranker)]
        cells = [f"{values[c]:>{w}.4f}" if c in values else f"{'-':>{w}}" for c, w in zip(columns, widths)]
        lines.append(f"{split:<{split_width}} {ranker:<{ranker_width}} " + " ".join(cells))
    return "\n".join(lines)
