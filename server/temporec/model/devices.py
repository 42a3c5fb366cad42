"""Which torch device to run on: one rule for the server, training and encoders."""

from __future__ import annotations

import torch

from temporec.contract.errors import FailedPrecondition, InvalidArgument

ALLOWED = "'auto', 'cpu', 'cuda', 'cuda:N'"


def resolve_device(name: str | None = None, setting: str = "device") -> torch.device:
    """``name`` as a torch device; empty, None or "auto": CUDA when present, else the CPU.

    ``setting`` names the option in error messages (e.g. "encoder 'local': option 'device'").
    """
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InvalidArgument(f"{setting} {name!r}: allowed: {ALLOWED}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FailedPrecondition(f"{setting} {name!r}: CUDA is not available on this machine")
    return device
