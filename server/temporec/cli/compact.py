"""``temporec compact``: save an artifact again with its catalog's item vectors as one
table, for serving a large catalog (docs/operations.md, large catalogs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from temporec.contract.registry import load_registry
from temporec.model.artifacts import compact_artifact
from temporec.model.item_index import KINDS

DESCRIPTION = """\
Write a compact copy of an artifact: the catalog's item vectors, computed once, as one
table (float16 by default) in place of the text embeddings, id embeddings and feature
values they are computed from. A million items with 384-wide text embeddings and
64-wide vectors go from about 1.8 GiB to about 0.2 GiB, and a server starts without
computing the vectors. Items outside the catalog are still embedded by the encoder and
projected (a tuned language model is copied with the artifact to embed them). The
copy's version is the original's plus "-compact", so in the same models directory it is
the one served; `temporec eval` reads either, training the full artifact.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compact",
        help="write a compact copy of an artifact for serving large catalogs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="the artifact directory to compact")
    parser.add_argument("--out", help="where to write the copy (default: beside the artifact)")
    parser.add_argument(
        "--dtype",
        default="float16",
        choices=("float16", "bfloat16", "float32"),
        help="the table's precision (default: float16; benchmarks/RESULTS.md, catalog, measures its recall)",
    )
    parser.add_argument(
        "--index",
        choices=KINDS,
        help="also build an index of the item vectors (needs faiss: pip install 'temporec[faiss]'): ivf, "
        "approximate, or flat, exact in float16; the server then scores each request's proposals from it "
        "instead of the whole catalog",
    )
    parser.add_argument("--lists", type=int, help="an ivf index's clusters (default: about 4 sqrt(items))")
    parser.add_argument(
        "--probe", type=int, help="clusters an ivf index searches per request (default: calibrated on the model)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = Path(args.model)
    heads = load_registry().heads
    out = compact_artifact(model, args.out or model.parent, heads, args.dtype, args.index, args.lists, args.probe)
    print(out)
    return 0
