"""``temporec plugins``: list the installed plugins, what each registers, and load errors."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from temporec.contract.registry import KINDS, PluginInfo, load_registry

FILTERS = ("TEMPOREC_PLUGINS", "TEMPOREC_BLOCK_PLUGINS")

DESCRIPTION = """\
List the plugins found through entry points in the group 'temporec': entry-point name,
distribution and version, the heads, domains and encoders each registers, and the error
of any plugin that failed to import or register (the others still load).

Plugins run code when imported; two environment variables choose which are loaded:
  TEMPOREC_PLUGINS        comma-separated entry-point names: only these load
                          (set but empty: none load)
  TEMPOREC_BLOCK_PLUGINS  comma-separated entry-point names never to load
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins and what they register",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    plugins = load_registry().plugins
    filters = {name: os.environ[name] for name in FILTERS if name in os.environ}
    if args.json:
        print(json.dumps({"plugins": [asdict(info) for info in plugins], "filters": filters}, indent=2))
    else:
        print(format_table(plugins, filters))
    return 0


def format_table(plugins: list[PluginInfo], filters: dict[str, str]) -> str:
    """One line per plugin, then any filter variables in effect."""
    rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "REGISTERS")]
    rows += [(info.name, info.distribution, info.version, _registers(info)) for info in plugins]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[3]]).rstrip() for row in rows]
    if not plugins:
        lines.append("(no plugins loaded)")
    lines += [f"{name}={value!r}" for name, value in filters.items()]
    return "\n".join(lines)


def _registers(info: PluginInfo) -> str:
    parts = [f"{kind}: {', '.join(names)}" for kind in KINDS if (names := info.registered[kind])]
    if info.error:
        parts.append(f"ERROR {info.error}")
    return "; ".join(parts) or "(nothing)"
