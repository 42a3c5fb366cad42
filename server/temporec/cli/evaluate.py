"""``temporec eval``: evaluate a trained model, with the popularity baseline, leave-one-out."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Evaluate a saved model on leave-one-out splits: each user's last event is the test
target, the one before it the validation target. Every item of the model's catalog is
ranked (the user's history masked out) and HR@K, NDCG@K (K = 5, 10, 20) and MRR are
reported for the model and, in the same run, for the popularity baseline.
"""

EPILOG = """\
Without --data the model is evaluated on the data it was trained on (the path in its
manifest), read by its domain. Events of items outside the model's catalog are dropped
and counted.

Examples:
  temporec eval --model models/video-lstm-20250101120000-1a2b3c4d
  temporec eval --model models/video-lstm-20250101120000-1a2b3c4d --data ml-100k/ --json
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained model against the popularity baseline",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="artifact directory")
    parser.add_argument(
        "--data", default=None, metavar="PATH", help="data set to evaluate on (default: the training data)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--batch-size", type=int, default=256, help="users per scoring matmul (default 256)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N (default auto)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from temporec.training import evaluate_artifact, format_table

    report = evaluate_artifact(args.model, args.data, batch_size=args.batch_size, device=args.device)
    if args.json:
        print(report.to_json())
        return 0
    print(f"model: {report.model}")
    print(f"data:  {report.data}" + ("" if report.same_data_as_training else "  (not the training data)"))
    print(f"users: {report.users}; events dropped (items outside the model's catalog): {report.dropped_events}")
    print(format_table(report.metrics, name=report.head))
    return 0
