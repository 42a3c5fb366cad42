"""The ``ar`` head: an autoregressive, causal self-attention Transformer over the events
(GPT-style, as in SASRec), predicting the next item at every position.

Pre-LN blocks (attention and MLP, each ``x + f(LayerNorm(x))``) and a final LayerNorm, or
post-LN blocks (option ``norm``), and learned absolute positions. Rows are moved to right padding before the blocks (see
``temporec.to_front``): the state at a real position then attends only to the row's real events
at or before it, with torch's causal attention and no padding mask, so no row, however
much padding it has, can produce NaN; and a row's states do not depend on the padding.

Positions (option ``positions``):

- ``"first"``: counted from each row's oldest event (0, 1, ...). A training position then
  looks exactly like the end of a shorter history at serving time.
- ``"last"``: counted back from the most recent event, which is always ``max_len - 1``
  (as SASRec numbers a left-padded row).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from temporec import (
    Head,
    HeadOutput,
    allowed,
    hookimpl,
    padding_lengths,
    to_back,
    to_front,
)

POSITIONS = ("first", "last")
NORMS = ("pre", "post")


class CausalBlock(nn.Module):
    """A Transformer block with causal self-attention over right-padded rows: pre-LN
    (``x + f(LayerNorm(x))``) or post-LN (``LayerNorm(x + f(x))``, as BERT and SASRec)."""

    def __init__(
        self, dim: int, heads: int, hidden: int, dropout: float, attention_dropout: float, post_norm: bool = False
    ):
        super().__init__()
        self.heads, self.post_norm = heads, post_norm
        self.attention_dropout = attention_dropout
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.attention_norm(x + self.dropout(self.attend(x)))
            return self.mlp_norm(x + self.dropout(self.mlp(x)))
        x = x + self.dropout(self.attend(self.attention_norm(x)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, length, head_dim)
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))


class ARHead(Head):
    """Causal Transformer head. Options: ``layers`` (blocks), ``heads`` (attention heads;
    they divide the model width), ``dropout`` (on the input and each block's residual
    branches), ``attention_dropout`` (on attention weights; slow on CPU), ``mlp_ratio``
    (MLP width / model width), ``positions`` ("first" or "last", see the module), ``norm``
    ("pre" or "post": where the blocks normalise, see ``CausalBlock``)."""

    name = "ar"
    options = {
        "layers": 2,
        "heads": 1,
        "dropout": 0.2,
        "attention_dropout": 0.0,
        "mlp_ratio": 4,
        "positions": "first",
        "norm": "pre",
    }

    def __init__(self, dim: int, max_len: int, **options):
        super().__init__(dim, max_len, **options)
        layers, heads, ratio = (int(self.config[k]) for k in ("layers", "heads", "mlp_ratio"))
        dropout, attention_dropout = float(self.config["dropout"]), float(self.config["attention_dropout"])
        self._check(layers, heads, ratio, dropout, attention_dropout)
        self.positions = nn.Embedding(max_len, dim)
        nn.init.normal_(self.positions.weight, std=dim**-0.5)
        self.dropout = nn.Dropout(dropout)
        post = self.config["norm"] == "post"
        self.blocks = nn.ModuleList(
            CausalBlock(dim, heads, ratio * dim, dropout, attention_dropout, post) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if not post else nn.Identity()  # post-LN blocks end normalised

    def _check(self, layers: int, heads: int, ratio: int, dropout: float, attention_dropout: float) -> None:
        problems = []
        if layers < 1:
            problems.append(f"option layers={layers}; must be at least 1")
        if heads < 1 or self.dim % heads:
            problems.append(f"option heads={heads}; must divide the model width {self.dim}")
        if ratio < 1:
            problems.append(f"option mlp_ratio={ratio}; must be at least 1")
        for key, value in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0 <= value < 1:
                problems.append(f"option {key}={value}; must be in [0, 1)")
        if self.config["norm"] not in NORMS:
            problems.append(f"option norm={self.config['norm']!r}; allowed: {allowed(NORMS)}")
        if self.config["positions"] not in POSITIONS:
            problems.append(f"option positions={self.config['positions']!r}; allowed: {allowed(POSITIONS)}")
        if problems:
            raise ValueError(f"head 'ar': {'; '.join(problems)}")

    def position_index(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) the position of each right-padded slot (padding slots get any valid one)."""
        length = mask.shape[1]
        if length > self.max_len:
            raise ValueError(f"head 'ar': {length} events; this head reads at most max_len={self.max_len}")
        slots = torch.arange(length, device=mask.device).expand_as(mask)
        if self.config["positions"] == "first":
            return slots
        real = length - padding_lengths(mask)
        return (slots + (self.max_len - real).unsqueeze(1)).clamp(max=self.max_len - 1)

    def forward(self, events: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        x = to_front(events, mask) + self.positions(self.position_index(mask))
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        states = to_back(self.norm(x), mask)
        return HeadOutput(states * mask.unsqueeze(-1))


@hookimpl
def register_heads(register):
    register(ARHead)
