#!/usr/bin/env python3
"""Regenerate the Python gRPC stubs from protos/ into the client distribution.

    python scripts/generate_protos.py          # rewrite the stubs
    python scripts/generate_protos.py --check  # exit 1 when the committed stubs are stale

The stubs for ``protos/temporec/v1/*.proto`` land in ``clients/python/temporec_client/v1/``
(the package ``temporec_client.v1``), so that the client distribution ships them and needs
only grpcio and protobuf. The server imports the same modules (``temporec.v1`` re-exports
them). protoc names Python modules after the proto path (``temporec.v1``), so their
absolute imports and module names are rewritten to ``temporec_client.v1``.

Needs grpcio-tools (the ``dev`` extra). The stubs depend on the grpcio-tools version, so
CI and developers should generate with the same one. Runs without importing temporec.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUTPUT = ROOT / "clients" / "python"
#: protoc's top-level module (the proto package's first part) -> the package that ships it.
PROTO_ROOT, PYTHON_ROOT = "temporec", "temporec_client"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
INIT_TEXT = '"""Generated gRPC stubs for the temporec API; regenerate with scripts/generate_protos.py."""\n'

# `from temporec.v1 import x_pb2` and the module names given to the message classes.
IMPORT = re.compile(rf"^from {PROTO_ROOT}\.(?=[\w.]+ import )", re.MULTILINE)
MODULE_NAME = re.compile(rf"'{PROTO_ROOT}\.(?=[\w.]+_pb2')")


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(destination: Path) -> list[Path]:
    """Generate every proto's stubs under ``destination``/temporec_client; return the
    written files, relative to ``destination``."""
    import importlib.resources

    from grpc_tools import protoc  # imported here so --help works without grpcio-tools

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = [str(p.relative_to(PROTOS)) for p in proto_files()]
    raw = destination / "protoc"
    raw.mkdir()
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={raw}",
        f"--pyi_out={raw}",
        f"--grpc_python_out={raw}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")
    written = []
    for source in sorted(raw.rglob("*.py*")):
        target = destination / PYTHON_ROOT / source.relative_to(raw / PROTO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(relocate(source.read_text()))
        written.append(target)
    for package in {p.parent for p in written}:
        (package / "__init__.py").write_text(INIT_TEXT)
        written.append(package / "__init__.py")
    return sorted(p.relative_to(destination) for p in written)


def relocate(code: str) -> str:
    """Point protoc's ``temporec.*`` imports and module names at ``temporec_client.*``."""
    code = IMPORT.sub(f"from {PYTHON_ROOT}.", code)
    return MODULE_NAME.sub(f"'{PYTHON_ROOT}.", code)


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
    shown = OUTPUT.relative_to(ROOT)

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generated = generate(fresh)
        packages = {p.parent for p in generated}
        stale = sorted(committed(packages) - set(generated))
        differing = [
            p for p in generated if not (OUTPUT / p).is_file() or not filecmp.cmp(fresh / p, OUTPUT / p, shallow=False)
        ]

        if args.check:
            for path in differing:
                print(f"out of date: {shown / path}", file=sys.stderr)
            for path in stale:
                print(f"no proto generates: {shown / path}", file=sys.stderr)
            if differing or stale:
                print("run: python scripts/generate_protos.py", file=sys.stderr)
                return 1
            print(f"stubs up to date ({len(generated)} files)")
            return 0

        for path in differing:
            (OUTPUT / path).parent.mkdir(parents=True, exist_ok=True)
            (OUTPUT / path).write_bytes((fresh / path).read_bytes())
            print(f"wrote {shown / path}")
        for path in stale:
            (OUTPUT / path).unlink()
            print(f"removed {shown / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
