"""Results files that several benchmarks share: each benchmark owns named sections,
replaced when it runs again, and leaves the others as they are."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SECTION = re.compile(r"<!-- section (\S+) -->\n(.*?)\n<!-- end \1 -->", re.S)

#: benchmarks/RESULTS.md: its title, and its sections in order with the scripts that write them.
RESULTS_TITLE = (
    "# Benchmarks\n\nEach section is written by the script it names and replaced when that script runs again."
)
RESULTS_SECTIONS = (
    "ml1m",  # benchmarks/ml1m.py
    "ml1m-notes",  # by hand: how the ML-1M numbers were measured, and the gaps to the goals
    *("retail-taobao", "news-nemig-en", "news-nemig-de", "news-mind-small-sample"),  # benchmarks/domains.py
    *("customer_service-stackfaq", "customer_service-banking77"),  # benchmarks/domains.py
    "load",  # benchmarks/load.py
    "load-knee",  # by hand: benchmarks/load.py's paced tail at lower loads
    "served",  # benchmarks/served.py
    "pipeline",  # benchmarks/pipeline.py
    *("defaults-shop-ids", "threads"),  # benchmarks/defaults.py
    "sasrec-gap",  # benchmarks/sasrec_gap.py
    *("tuning-amazon-office", "tuning-amazon-beauty"),  # benchmarks/tuning.py
    *("tuning-two-stages-amazon-office", "tuning-two-stages-amazon-beauty"),  # tuning.py --two-stages
    *("heads-amazon-office", "heads-amazon-beauty"),  # benchmarks/heads.py
    *("peers-amazon-office", "peers-amazon-beauty", "peers-ml-1m", "peers-taobao"),  # benchmarks/peers.py
    "peers-notes",  # by hand: what the peers' tables show, and what they do not
    *("replay-taobao", "realtime-speed"),  # benchmarks/replay.py
    "finance-phrasebank",  # benchmarks/finance.py
    "finance-topics",  # benchmarks/topics.py
    "finance-detection",  # benchmarks/detection.py
    *("finance-replay", "finance-throughput"),  # benchmarks/monitor.py
    "workers",  # benchmarks/served.py --workers
    "catalog",  # benchmarks/catalog.py
    "encoders",  # benchmarks/encoders.py
    "torchrun",  # benchmarks/torchrun.py
    *("tuning-banking77", "tuning-stackfaq"),  # benchmarks/conversations.py
    *("tuning-two-stages-banking77", "tuning-two-stages-stackfaq"),  # conversations.py --two-stages
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


ROOT = Path(__file__).resolve().parents[1]


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages: a result measured while other work
    shared the cores says so."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def source_revision(root: Path = ROOT) -> str:
    """The commit the benchmarks run from, "+changes" when tracked files differ from it,
    so that a result names the code that measured it. Results files are what benchmarks
    write, not code: a run that another one's results changed still names its commit."""
    status = ["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude,glob)**/RESULTS*.md"]
    try:
        commit, changes = (
            subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()
            for args in (["rev-parse", "--short", "HEAD"], status)
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changes else "")


def machine(device: str = "cpu") -> dict[str, str]:
    """The machine a result was measured on: CPU, cores this process may use, memory,
    torch threads, device (and GPU), torch and Python versions."""
    import torch  # here, so that scripts that only write sections need no torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    memory = next((line.split()[1] for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal")), "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    described = {
        "cpu": cpu,
        "cores": str(cores),
        "memory": f"{int(memory) / 2**20:.0f} GiB" if memory else "unknown",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda"):
        described["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return described


MACHINE_KEYS = ("cpu", "cores", "memory", "threads", "device", "gpu", "torch", "python")


def machine_line(described: dict[str, str], keys: Sequence[str] = MACHINE_KEYS) -> str:
    """``machine()``'s description as one line, its ``keys`` in order (those present)."""
    return ", ".join(f"{key} {described[key]}" for key in keys if key in described)


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def record(out: Path, name: str, script: str, argv: list[str] | None, started: float, body: str) -> None:
    """Write ``body`` as section ``name`` of ``out``, headed by the command that measured it
    (``script`` run with ``argv``, the process's own arguments when None), the date, the
    commit, the machine and how long it took (``started``: its ``time.monotonic()``)."""
    command = " ".join([f"python benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])
    took = (time.monotonic() - started) / 60
    head = (
        f"## {name}\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}, commit {source_revision()}, "
        f"{machine_line(machine('cpu'))}; took {took:.1f} min)\n"
    )
    write_section(out, name, head + "\n" + body, RESULTS_TITLE, order=RESULTS_SECTIONS)
