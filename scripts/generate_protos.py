#!/usr/bin/env python3
"""Regenerate the Python gRPC stubs from protos/ into server/ (the package ``temporec.v1``).

    python scripts/generate_protos.py          # rewrite the stubs
    python scripts/generate_protos.py --check  # exit 1 when the committed stubs are stale

Needs grpcio-tools (the ``dev`` extra). The stubs depend on the grpcio-tools version, so
CI and developers should generate with the same one. Runs without importing temporec.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUTPUT = ROOT / "server"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
INIT_TEXT = '"""Generated gRPC stubs for the temporec.v1 API; regenerate with scripts/generate_protos.py."""\n'


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(destination: Path) -> list[Path]:
    """Run protoc on every proto into ``destination``; return the written files, relative."""
    from grpc_tools import protoc  # imported here so --help works without grpcio-tools
    import importlib.resources

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = [str(p.relative_to(PROTOS)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={destination}",
        f"--pyi_out={destination}",
        f"--grpc_python_out={destination}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")
    for package in {Path(p).parent for p in protos}:
        (destination / package / "__init__.py").write_text(INIT_TEXT)
    return sorted(p.relative_to(destination) for p in destination.rglob("*") if p.is_file())


def committed(packages: set[Path]) -> set[Path]:
    """The generated files now in the output packages (to find stale ones)."""
    found = set()
    for package in packages:
        for path in (OUTPUT / package).glob("*"):
            if path.name == "__init__.py" or path.name.endswith(GENERATED_SUFFIXES):
                found.add(path.relative_to(OUTPUT))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when the stubs differ")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generated = generate(fresh)
        packages = {p.parent for p in generated}
        stale = sorted(committed(packages) - set(generated))
        differing = [p for p in generated if not (OUTPUT / p).is_file() or not filecmp.cmp(fresh / p, OUTPUT / p, shallow=False)]

        if args.check:
            for path in differing:
                print(f"out of date: server/{path}", file=sys.stderr)
            for path in stale:
                print(f"no proto generates: server/{path}", file=sys.stderr)
            if differing or stale:
                print("run: python scripts/generate_protos.py", file=sys.stderr)
                return 1
            print(f"stubs up to date ({len(generated)} files)")
            return 0

        for path in differing:
            (OUTPUT / path).parent.mkdir(parents=True, exist_ok=True)
            (OUTPUT / path).write_bytes((fresh / path).read_bytes())
            print(f"wrote server/{path}")
        for path in stale:
            (OUTPUT / path).unlink()
            print(f"removed server/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
