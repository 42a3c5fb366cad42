"""What turns an item's text embedding into an item vector: a linear projection, or an
adaptor that learns how this field's users read the language model's space.

The adaptor follows UniSRec (Hou et al., KDD'22): ``experts`` parametric whitening
transforms ``(x - c_k) W_k`` of the frozen embedding ``x``, mixed by a softmax gate on
``x``. Sentence embeddings crowd into a narrow cone (anisotropy), where a dot product tells
items apart poorly; each expert learns a centre and a rotation that spread this catalog's
items out, and the gate picks per item which view fits. It trains with the head, on the
next-item loss, and costs a few matrix products per step, so it suits a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TEXT_PROJECTIONS = ("linear", "adaptor")


class MoEAdaptor(nn.Module):
    def __init__(self, text_dim: int, dim: int, experts: int = 8, dropout: float = 0.1):
        super().__init__()
        if experts < 1:
            raise ValueError(f"adaptor experts {experts}; must be at least 1")
        self.centres = nn.Parameter(torch.zeros(experts, text_dim))
        # std 1/sqrt(E), as nn.Linear would start, so a uniform mix of experts at first
        # gives item vectors of the linear projection's size.
        self.weights = nn.Parameter(torch.randn(experts, text_dim, dim) / math.sqrt(text_dim))
        self.gate = nn.Linear(text_dim, experts, bias=False)
        nn.init.zeros_(self.gate.weight)  # every expert weighs alike until the gate learns
        self.dropout = nn.Dropout(dropout)

    @property
    def experts(self) -> int:
        return self.centres.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., text_dim) -> (..., dim)."""
        experts, text_dim, dim = self.weights.shape
        gates = torch.softmax(self.gate(x), dim=-1)  # (..., K)
        # (x - c_k) W_k = x W_k - c_k W_k: one product for every expert, no (..., K, E) copy of x.
        spread = self.dropout(x) @ self.weights.permute(1, 0, 2).reshape(text_dim, experts * dim)
        shifted = spread.unflatten(-1, (experts, dim)) - torch.einsum("ke,ked->kd", self.centres, self.weights)
        return (gates.unsqueeze(-1) * shifted).sum(-2)


def text_projection(kind: str, text_dim: int, dim: int, experts: int = 8, dropout: float = 0.1) -> nn.Module:
    """The module of projection ``kind`` (``TEXT_PROJECTIONS``)."""
    if kind == "linear":
        return nn.Linear(text_dim, dim)
    if kind == "adaptor":
        return MoEAdaptor(text_dim, dim, experts, dropout)
    raise ValueError(f"text projection {kind!r}; allowed: {', '.join(TEXT_PROJECTIONS)}")
