"""The ``temporec`` command. Each subcommand lives in its own module of this package and
exposes ``add_parser(subparsers)``, which registers its arguments and sets ``run``."""

from __future__ import annotations

import argparse
import logging
import sys

from temporec import __version__
from temporec.cli import compact, demo, evaluate, experiments, export_triton, monitor, plugins, serve, train
from temporec.contract.errors import TemporecError

COMMANDS = (serve, train, evaluate, plugins, demo, export_triton, experiments, monitor, compact)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="temporec",
        description="LLM-based sequential recommendation served over gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"temporec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args) or 0
    except TemporecError as exc:
        print(f"temporec {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
