"""temporec: LLM-based sequential recommendation, served over gRPC.

The package is grouped by role (docs/architecture.md):

    contract/   what plugins implement and import (re-exported here)
    data/       readers of data sets on disk
    model/      the sequential recommender, its artifacts, embeddings and devices
    training/   training and offline evaluation
    serving/    the transport-free data plane: models, batching, encoders, config
    grpc/       the gRPC transport
    triton/     Triton Inference Server model repositories
    cli/        the ``temporec`` command

Plugin authors import the contract from here::

    from temporec import hookimpl, Head, Domain, Encoder, Query, Catalog, InvalidArgument

The names load on first use, so that light modules such as the generated API stubs
(``temporec.v1``) do not pull in torch.
"""

import importlib

import pluggy

from temporec import _moved

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("temporec")

_moved.install()


def __getattr__(name: str):
    contract = importlib.import_module("temporec.contract")
    if name in contract.NAMES:
        return getattr(contract, name)
    raise AttributeError(f"module 'temporec' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *importlib.import_module("temporec.contract").NAMES])
