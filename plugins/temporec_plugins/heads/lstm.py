"""The ``lstm`` head: a recurrent network (LSTM or GRU) over the event vectors.

An RNN is causal by construction. Batches arrive left-padded, and an RNN's state drifts
even on zero inputs (its biases), so each row is shifted to start at its first real event
before the RNN runs and shifted back after: the state at every real position depends
only on that row's events, however much padding the batch has.
"""

from __future__ import annotations

import torch
from torch import nn

from temporec import Head, HeadOutput, allowed, hookimpl, to_back, to_front

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class LSTMHead(Head):
    """Recurrent head. Options: ``layers`` (stacked RNN layers), ``cell`` ("lstm" or
    "gru"), ``dropout`` (on the RNN outputs and between layers)."""

    name = "lstm"
    options = {"layers": 1, "cell": "lstm", "dropout": 0.1}

    def __init__(self, dim: int, max_len: int, **options):
        super().__init__(dim, max_len, **options)
        cell, layers, dropout = self.config["cell"], int(self.config["layers"]), float(self.config["dropout"])
        if cell not in CELLS:
            raise ValueError(f"head 'lstm': option cell={cell!r}; allowed: {allowed(CELLS)}")
        if layers < 1:
            raise ValueError(f"head 'lstm': option layers={layers}; must be at least 1")
        self.rnn = CELLS[cell](dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, events: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        # Right-padded rows: the recurrence starts at each row's first real event.
        outputs, _ = self.rnn(to_front(events, mask))
        outputs = to_back(outputs, mask)
        states = self.out(self.dropout(self.norm(outputs)))
        return HeadOutput(states * mask.unsqueeze(-1))


@hookimpl
def register_heads(register):
    register(LSTMHead)
