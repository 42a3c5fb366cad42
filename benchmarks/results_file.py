"""Results files that several benchmarks share: each benchmark owns named sections,
replaced when it runs again, and leaves the others as they are."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

SECTION = re.compile(r"<!-- section (\S+) -->\n(.*?)\n<!-- end \1 -->", re.S)

#: benchmarks/RESULTS.md: its title, and its sections in order with the scripts that write them.
RESULTS_TITLE = "# Benchmarks\n\nEach section is written by the script it names and replaced when that script runs again."
RESULTS_SECTIONS = (
    "ml1m",  # benchmarks/ml1m.py
    "ml1m-notes",  # by hand: how the ML-1M numbers were measured, and the gaps to the goals
    *("retail-taobao", "news-nemig-en", "news-nemig-de", "news-mind-small-sample"),  # benchmarks/domains.py
    *("customer_service-stackfaq", "customer_service-banking77"),  # benchmarks/domains.py
    "load",  # benchmarks/load.py
)


def write_section(path: Path, name: str, body: str, title: str, order: Sequence[str] = ()) -> None:
    """Replace (or add) the section ``name`` of the file at ``path``, keeping the others;
    sections named in ``order`` come first, in that order, then the rest as found."""
    sections = dict(SECTION.findall(path.read_text())) if path.is_file() else {}
    sections[name] = body.rstrip()
    names = [n for n in order if n in sections] + [n for n in sections if n not in order]
    blocks = [f"<!-- section {n} -->\n{sections[n]}\n<!-- end {n} -->" for n in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(title.rstrip() + "\n\n" + "\n\n".join(blocks) + "\n")


def source_revision(root: Path = Path(__file__).resolve().parents[1]) -> str:
    """The commit the benchmarks run from, "+changes" when tracked files differ from it,
    so that a result names the code that measured it."""
    try:
        commit, changes = (
            subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()
            for args in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changes else "")
