"""Repeat-aware scores: shoppers come back to what they viewed, and a model that scores
every item by one dot product misses it (Hu et al., TIFU-KNN, SIGIR'20; Li et al., the
next-basket "reality check", RecSys'21). ``RepeatScores`` adds to each item of the user's
own history a learned bonus, summed over its occurrences there:

    bonus(item j after event t) = g(state_t) * sum over events u <= t with item j of
                                  SCALE * (recency[t - u] + action[action_u])

``recency`` and ``action`` are learned tables (so frequency, recency and what the user did
are weighed together), and ``g = softplus(w . state_t + b)`` is a gate read from the
head's state: RepeatNet's choice (Ren et al., AAAI'19) between repeating and exploring,
made per user and moment. Both tables start at zero: an untrained model scores as one
without them. Any head: the bonus reads the events and the head's states only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The tables enter the scores times this: under Adam a parameter moves by about the learning
#: rate a step, and a bonus that matters is several units of score, so unscaled tables would
#: need thousands of steps to get there (as ids are scaled up, ``SequenceRecommender``).
SCALE = 10.0


class RepeatScores(nn.Module):
    def __init__(self, dim: int, max_len: int, n_actions: int):
        super().__init__()
        self.recency = nn.Parameter(torch.zeros(max_len))
        self.action = nn.Parameter(torch.zeros(max(n_actions, 1)))
        self.gate = nn.Linear(dim, 1)

    def weights(self, states: torch.Tensor, items: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
        """(B, T, L): what event ``u`` of each row adds to its item's score after event
        ``t``, for the last T positions of the L events (``states`` (B, T, dim)); 0 for
        later events, padding and items outside the catalog."""
        length, queries = items.shape[1], states.shape[1]
        slots = torch.arange(length, device=items.device)
        distance = slots[length - queries :].unsqueeze(1) - slots  # (T, L): t - u
        causal = distance >= 0
        kernel = self.recency[distance.clamp(0, len(self.recency) - 1)] + self.action[actions].unsqueeze(1)
        kernel = kernel * SCALE
        valid = causal & (mask & (items >= 0)).unsqueeze(1)
        return F.softplus(self.gate(states)) * kernel * valid

    def add_to(
        self,
        scores: torch.Tensor,
        states: torch.Tensor,
        items: torch.Tensor,
        actions: torch.Tensor,
        mask: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``scores`` (B, C) of the candidates ``index`` (C,) (the whole catalog when None)
        after each history's last event, with its bonus added; ``states`` (B, dim)."""
        weights = self.weights(states.unsqueeze(1), items, actions, mask).squeeze(1)  # (B, L)
        return scores.scatter_add(1, *columns(items, weights, index, scores.shape[1]))


def columns(items: torch.Tensor, weights: torch.Tensor, index: torch.Tensor | None, width: int):
    """The score columns of ``items`` among the candidates ``index`` (all items when None),
    and their ``weights`` (0 where an item is not a candidate): what ``scatter_add`` takes.
    Of a candidate listed twice, one of its columns gets the bonus."""
    if index is not None:
        lookup = torch.full((int(max(items.max(), index.max())) + 1,), -1, dtype=torch.long, device=items.device)
        lookup[index] = torch.arange(len(index), device=items.device)
        items = lookup[items.clamp(min=0)]
        weights = weights * (items >= 0)
    return items.clamp(0, width - 1), weights
