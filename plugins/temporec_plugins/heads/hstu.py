"""The ``hstu`` head: Hierarchical Sequential Transduction Units (Zhai et al., ICML 2024,
"Actions Speak Louder than Words"), after facebookresearch/generative-recommenders.

Each layer, on its input ``x`` (one linear map gives the four projections):

    U, V, Q, K = split(SiLU(Linear(LayerNorm(x))))
    A          = SiLU(Q Kᵀ + relative bias) / n        pointwise and causal: no softmax
    x          = x + Linear(Dropout(LayerNorm(A V) * U))

then a final LayerNorm. Without a softmax a position's weights need not sum to 1, so how
many related events a history holds (the intensity of a preference) reaches the state.
``n`` is the number of events a position attends to (option ``scale``).

The relative bias is learned per attention head and per layer: one value per distance
``t - u`` between the query ``t`` and the key ``u`` (clamped at ``max_len - 1``), plus
one per log-scale bucket of the time between the two events. The model passes this head
the events' timestamps (``reads_timestamps``). The time is the query event's minus the
key's: generative-recommenders uses the time of the event after the query, which a head
trained to predict that event must not see. Where either time is unknown (0), on padding,
or when the batch has no timestamps, the time bias is 0 and the positions alone remain:
the head reads timestamps where a domain has them and does not require them.

Rows are moved to right padding first (``temporec.to_front``), as ``ar`` does: with the
causal mask no real position then reads padding, and a row's states do not depend on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from temporec import Head, HeadOutput, allowed, hookimpl, to_back, to_front

SCALES = ("events", "max_len")
TIME_STEP = 0.301  # natural-log width of a time bucket (each ~1.35 times the last), as generative-recommenders'
BIAS_STD = 0.02  # the relative biases start near 0, as generative-recommenders'


def time_buckets(timestamps: torch.Tensor, buckets: int) -> torch.Tensor:
    """(B, L, L) the log bucket, 1..buckets, of the time between events ``t`` and ``u``
    of each row; 0 where either time is unknown (0)."""
    gaps = (timestamps.unsqueeze(2) - timestamps.unsqueeze(1)).abs()
    index = 1 + (torch.log1p(gaps) / TIME_STEP).floor().long().clamp(max=buckets - 1)
    known = timestamps > 0
    return torch.where(known.unsqueeze(2) & known.unsqueeze(1), index, 0)


class HSTULayer(nn.Module):
    """One HSTU layer with its own relative biases (see the module)."""

    def __init__(
        self, dim: int, heads: int, attention_dim: int, linear_dim: int, max_len: int, buckets: int, dropout: float
    ):
        super().__init__()
        self.heads, self.sizes = heads, [heads * linear_dim] * 2 + [heads * attention_dim] * 2
        self.norm = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, sum(self.sizes))
        self.position_bias = nn.Embedding(max_len, heads)
        nn.init.normal_(self.position_bias.weight, std=BIAS_STD)
        self.time_bias = nn.Embedding(buckets + 1, heads, padding_idx=0) if buckets else None
        if self.time_bias is not None:
            nn.init.normal_(self.time_bias.weight[1:], std=BIAS_STD)  # row 0 (unknown) stays 0
        self.attention_norm = nn.LayerNorm(heads * linear_dim)
        self.out = nn.Linear(heads * linear_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def bias(self, distances: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        """(B or 1, heads, L, L) from (L, L) distances and (B, L, L) time buckets."""
        bias = self.position_bias(distances).permute(2, 0, 1).unsqueeze(0)
        if times is None or self.time_bias is None:
            return bias
        return bias + self.time_bias(times).permute(0, 3, 1, 2)

    def forward(
        self, x: torch.Tensor, distances: torch.Tensor, times: torch.Tensor | None, weights: torch.Tensor
    ) -> torch.Tensor:
        """``distances`` and ``weights`` (L, L): see ``HSTUHead.relative``; ``times``: (B, L, L)."""
        batch, length, _ = x.shape
        split = lambda t: t.view(batch, length, self.heads, -1).transpose(1, 2)  # (B, heads, L, size)
        u, v, q, k = F.silu(self.uvqk(self.norm(x))).split(self.sizes, dim=-1)
        scores = F.silu(split(q) @ split(k).transpose(-1, -2) + self.bias(distances, times)) * weights
        attended = (scores @ split(v)).transpose(1, 2).reshape(batch, length, -1)
        return x + self.out(self.dropout(self.attention_norm(attended) * u))


class HSTUHead(Head):
    """HSTU head. Options: ``layers``, ``heads`` (attention heads), ``attention_dim`` (the
    size of Q and K per head; 0: the model width / heads), ``linear_dim`` (of U and V per
    head; 0: the model width / heads), ``dropout`` (on the input and each layer's gated
    output), ``time_buckets`` (log-scale buckets of the time between two events, the last
    holding every longer one; 0: positions only), ``scale`` ("events": attention divided
    by the number of events a position attends to; "max_len": by ``max_len``, as
    generative-recommenders divides by its padded length)."""

    name = "hstu"
    options = {
        "layers": 2,
        "heads": 1,
        "attention_dim": 0,
        "linear_dim": 0,
        "dropout": 0.2,
        "time_buckets": 64,
        "scale": "events",
    }
    reads_timestamps = True

    def __init__(self, dim: int, max_len: int, **options):
        super().__init__(dim, max_len, **options)
        self._check()
        layers, heads, self.buckets = (int(self.config[k]) for k in ("layers", "heads", "time_buckets"))
        sizes = [int(self.config[k]) or dim // heads for k in ("attention_dim", "linear_dim")]
        dropout = float(self.config["dropout"])
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            HSTULayer(dim, heads, *sizes, max_len, self.buckets, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def _check(self) -> None:
        c, problems = self.config, []
        heads, sizes = int(c["heads"]), {k: int(c[k]) for k in ("attention_dim", "linear_dim")}
        if int(c["layers"]) < 1:
            problems.append(f"option layers={c['layers']}; must be at least 1")
        if heads < 1 or (0 in sizes.values() and self.dim % heads):
            problems.append(
                f"option heads={heads}; must divide the model width {self.dim} (or set attention_dim and linear_dim)"
            )
        problems += [
            f"option {k}={v}; must be at least 1, or 0 for the model width / heads" for k, v in sizes.items() if v < 0
        ]
        if int(c["time_buckets"]) < 0:
            problems.append(f"option time_buckets={c['time_buckets']}; must be at least 0")
        if not 0 <= float(c["dropout"]) < 1:
            problems.append(f"option dropout={c['dropout']}; must be in [0, 1)")
        if c["scale"] not in SCALES:
            problems.append(f"option scale={c['scale']!r}; allowed: {allowed(SCALES)}")
        if problems:
            raise ValueError(f"head 'hstu': {'; '.join(problems)}")

    def relative(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, L) distances ``t - u`` of right-padded slots, clamped to the position table,
        and the attention weights: 1/n at and below the diagonal, 0 above it (the future)."""
        slots = torch.arange(length, device=device)
        distances = slots.unsqueeze(1) - slots
        n = slots + 1 if self.config["scale"] == "events" else torch.full_like(slots, self.max_len)
        return distances.clamp(0, self.max_len - 1), (distances >= 0).float() / n.unsqueeze(1)

    def forward(self, events: torch.Tensor, mask: torch.Tensor, timestamps: torch.Tensor | None = None) -> HeadOutput:
        distances, weights = self.relative(events.shape[1], events.device)
        times = None
        if timestamps is not None and self.buckets:
            times = time_buckets(to_front(timestamps, mask), self.buckets)
        x = self.dropout(to_front(events, mask))
        for layer in self.layers:
            x = layer(x, distances, times, weights)
        states = to_back(self.norm(x), mask)
        return HeadOutput(states * mask.unsqueeze(-1))


@hookimpl
def register_heads(register):
    register(HSTUHead)
