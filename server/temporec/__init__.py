"""temporec: LLM-based sequential recommendation, served over gRPC.

Plugin authors need only what this module exports::

    from temporec import hookimpl, Head, Domain, Encoder

The component base classes are imported on first use, so that light modules such as the
generated API stubs (``temporec.v1``) do not pull in torch.
"""

import importlib

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("temporec")

_LAZY = {
    "Domain": "temporec.domains",
    "Encoder": "temporec.encoders",
    "Head": "temporec.heads",
    "HeadOutput": "temporec.heads",
}

__all__ = [*_LAZY, "hookimpl", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'temporec' has no attribute {name!r}")
