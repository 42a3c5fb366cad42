"""The ``decay`` head: a learned exponentially decaying average of the event vectors."""

from __future__ import annotations

import math

import torch
from torch import nn

import temporec


class DecayHead(temporec.Head):
    """``state_t = Linear(Σ_{u<=t} λ^(t-u) x_u / Σ_{u<=t} λ^(t-u))`` over real events.

    ``λ`` is one learnable rate per channel. Causal by construction: a running sum read
    left to right. Padding (``mask`` False) adds nothing, so a left-padded row gives the
    same states at its real positions as the unpadded history.
    """

    name = "decay"
    options = {"init_decay": 0.8}

    def __init__(self, dim: int, max_len: int, **options):
        super().__init__(dim, max_len, **options)
        init = float(self.config["init_decay"])
        if not 0.0 < init < 1.0:
            raise ValueError(f"head 'decay': option 'init_decay' is {init}; allowed: 0 < init_decay < 1")
        self.decay_logit = nn.Parameter(torch.full((dim,), math.log(init / (1 - init))))
        self.out = nn.Linear(dim, dim)

    @property
    def decay(self) -> torch.Tensor:
        """The per-channel rate λ in (0, 1)."""
        return torch.sigmoid(self.decay_logit)

    def forward(self, events: torch.Tensor, mask: torch.Tensor) -> temporec.HeadOutput:
        return temporec.HeadOutput(self.out(self.average(events, mask)))

    def average(self, events: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, dim): the decayed average of the real events up to each position
        (zero before the first one)."""
        weight = mask.unsqueeze(-1).to(events.dtype)
        decay = self.decay.to(events.dtype)
        total = torch.zeros_like(events[:, 0])
        norm = torch.zeros_like(total)
        averages = []
        for t in range(events.shape[1]):
            total = decay * total + weight[:, t] * events[:, t]
            norm = decay * norm + weight[:, t]
            averages.append(total / norm.clamp(min=1e-12))
        return torch.stack(averages, dim=1)


@temporec.hookimpl
def register_heads(register):
    register(DecayHead)
