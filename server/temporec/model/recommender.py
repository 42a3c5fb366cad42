"""The sequential recommender: item tower + event embedding + a temporal head.

    item vector  = W · text_embedding(item)  (+ id embedding, when the model has ids)
                                             (+ one embedding per categorical feature)
    event vector = item vector + action embedding + time-gap embedding
    user state   = head(event vectors)[-1]           (left-padded batches)
    score(item)  = user state · item vector          (similarity "dot")
                 = cos(user state, item vector) / τ  (similarity "cosine", temperature τ)

The text embeddings come from a frozen LLM encoder and are stored in the model, so a
trained model scores its catalog without calling the encoder; an item outside the catalog
is represented from its text alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from temporec.contract.heads import Head, HeadOutput
from temporec.model.repeats import RepeatScores, columns
from temporec.model.text_adaptor import text_projection as text_projection_module

GAP_BUCKETS = 32  # bucket 0: unknown gap; then one bucket per doubling of seconds
SIMILARITIES = ("dot", "cosine")


def top_k_in_slices(scores_of, n_rows: int, k: int, slice_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, rows) of each query's best ``k`` of ``n_rows`` rows, scored ``slice_rows``
    at a time by ``scores_of(start, stop)`` -> (Q, stop - start): each slice's best k, then
    the best of those, so no (Q, n_rows) matrix is ever held."""
    values, rows = [], []
    for start in range(0, n_rows, slice_rows):
        stop = min(start + slice_rows, n_rows)
        best = scores_of(start, stop).topk(min(k, stop - start), dim=1)
        values.append(best.values)
        rows.append(best.indices + start)
    best = torch.cat(values, dim=1).topk(k, dim=1)
    return best.values, torch.cat(rows, dim=1).gather(1, best.indices)


def gap_buckets(timestamps: torch.Tensor) -> torch.Tensor:
    """Bucket the log2 gap to the previous event, per position; 0 where unknown."""
    previous = F.pad(timestamps[..., :-1], (1, 0))
    gaps = (timestamps - previous).clamp(min=0)
    known = (timestamps > 0) & (previous > 0)
    buckets = 1 + torch.log2(1 + gaps.double()).floor().long().clamp(max=GAP_BUCKETS - 2)
    return torch.where(known, buckets, torch.zeros_like(buckets))


@dataclass
class EventBatch:
    """A left-padded batch of histories as tensors (see ``temporec.contract.heads``)."""

    items: torch.Tensor  # (B, L) long: catalog index, or -1 for an item known only by text
    actions: torch.Tensor  # (B, L) long: index into the model's action vocabulary
    gaps: torch.Tensor  # (B, L) long: time-gap bucket (``gap_buckets``)
    mask: torch.Tensor  # (B, L) bool: False on padding
    texts: torch.Tensor | None = None  # (B, L, E): text embeddings where items == -1
    timestamps: torch.Tensor | None = None  # (B, L) float64 Unix seconds; 0 on padding and where unknown

    @classmethod
    def from_histories(
        cls,
        items: list[list[int]],
        actions: list[list[int]],
        timestamps: list[list[float]],
        max_len: int,
        texts: list[list[torch.Tensor | None]] | None = None,
    ) -> "EventBatch":
        """Left-pad per-user histories (oldest first), keeping each one's last ``max_len``
        events. ``texts[b][t]`` is the text embedding of an event whose item is -1."""
        lengths = [min(len(h), max_len) for h in items]
        width = max(lengths, default=0) or 1
        size = (len(items), width)
        item_t = torch.zeros(size, dtype=torch.long)
        action_t = torch.zeros(size, dtype=torch.long)
        time_t = torch.zeros(size, dtype=torch.float64)
        text_t = None
        for b, n in enumerate(lengths):
            if n == 0:
                continue
            item_t[b, -n:] = torch.as_tensor(items[b][-n:])
            action_t[b, -n:] = torch.as_tensor(actions[b][-n:])
            time_t[b, -n:] = torch.as_tensor(timestamps[b][-n:], dtype=torch.float64)
            for t, vector in enumerate((texts[b] if texts else [])[-n:]):
                if vector is not None:
                    if text_t is None:
                        text_t = torch.zeros(*size, vector.shape[-1])
                    text_t[b, width - n + t] = vector
        mask = torch.arange(width).expand(size) >= (width - torch.as_tensor(lengths)).unsqueeze(1)
        return cls(item_t, action_t, gap_buckets(time_t), mask, text_t, time_t)

    def map(self, fn) -> "EventBatch":
        """The batch with ``fn`` applied to each of its tensors (rows picked, columns cut, a
        device), so that no field is forgotten."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        return EventBatch(**{name: None if t is None else fn(t) for name, t in tensors.items()})

    def to(self, device) -> "EventBatch":
        return self.map(lambda t: t.to(device))


class ItemFeature(nn.Module):
    """One categorical item feature (e.g. a shop's category): each catalog item's value
    index and an embedding per value, so that rarely seen items share what their value
    learned."""

    def __init__(self, values: torch.Tensor, dim: int):
        super().__init__()
        self.register_buffer("values", values.long().contiguous())
        self.embedding = nn.Embedding(int(values.max()) + 1 if values.numel() else 1, dim)
        nn.init.normal_(self.embedding.weight, std=1 / math.sqrt(dim))

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of catalog items ``index`` (all items when None)."""
        return self.embedding(self.values if index is None else self.values[index])


class SequenceRecommender(nn.Module):
    def __init__(
        self,
        head: Head,
        text_embeddings: torch.Tensor,
        n_actions: int,
        use_text: bool = True,
        use_ids: bool = True,
        dropout: float = 0.1,
        item_features: dict[str, torch.Tensor] | None = None,
        similarity: str = "dot",
        temperature: float = 1.0,
        text_projection: str = "linear",
        adaptor_experts: int = 8,
        scale_ids: bool = False,
        repeat_aware: bool = False,
    ):
        """``item_features``: categorical catalog features, name -> (n_items,) value
        indices (0..values-1); each value gets an embedding, added to the item vector.
        ``similarity``: how a user state scores an item, "dot" or "cosine" (divided by
        ``temperature``: a sharp softmax over unit vectors, as HSTU trains).
        ``text_projection``: "linear", or "adaptor" with ``adaptor_experts`` experts
        (``temporec.model.text_adaptor``). ``scale_ids``: the Transformer parameterisation
        of the id embeddings (see ``event_vectors``). ``repeat_aware``: the history's own
        items get a learned bonus (``temporec.model.repeats``)."""
        super().__init__()
        if not (use_text or use_ids or item_features):
            raise ValueError("an item representation needs text, ids or categorical features")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity {similarity!r}; allowed: {', '.join(SIMILARITIES)}")
        if temperature <= 0:
            raise ValueError(f"temperature {temperature}; must be above 0")
        self.similarity, self.temperature = similarity, float(temperature)
        self.text_projection, self.adaptor_experts = text_projection, adaptor_experts
        n_items, text_dim = text_embeddings.shape
        self.text_dim = text_dim  # the width of the texts the projection reads
        dim = head.dim
        self.head = head
        self.use_text, self.use_ids = use_text, use_ids
        # A fresh copy, never a view: safetensors hands out tensors at 8-byte offsets of one
        # buffer, and BLAS (MKL on x86) picks its kernel, and so its summation order, by the
        # alignment of its inputs. Torch's own allocations are 64-byte aligned, so a trained
        # model and the same model loaded from disk compute bit for bit alike.
        self.register_buffer("text_embeddings", text_embeddings.to(torch.float32, copy=True).contiguous())
        self.text_proj = (
            text_projection_module(text_projection, text_dim, dim, adaptor_experts, dropout) if use_text else None
        )
        self.item_ids = nn.Embedding(n_items, dim) if use_ids else None
        if self.item_ids is not None and use_text:
            # Beside text, an id embedding is a learned correction that starts at zero: an
            # item never seen in training keeps none, and is represented by its text alone.
            nn.init.zeros_(self.item_ids.weight)
        elif self.item_ids is not None:
            nn.init.normal_(self.item_ids.weight, std=1 / dim if scale_ids else 1 / math.sqrt(dim))
        self.scale_ids = scale_ids
        # While training (``TrainConfig.id_dropout``), the share of item vectors that leave
        # their id embedding out: the model learns to score an item by its text alone, as it
        # must an item that arrives after training (DropoutNet). Not saved: serving never drops.
        self.id_dropout = 0.0
        self.item_features = nn.ModuleDict(
            {name: ItemFeature(values, dim) for name, values in sorted((item_features or {}).items())}
        )
        self.actions = nn.Embedding(max(n_actions, 1), dim)
        self.gaps = nn.Embedding(GAP_BUCKETS, dim)
        # As small as the item vectors: at torch's default N(0, 1) they drown an item's
        # projected text (a few hundredths per coordinate) and text-only models never learn.
        for table in (self.actions, self.gaps):
            nn.init.normal_(table.weight, std=1 / math.sqrt(dim))
        self.dropout = nn.Dropout(dropout)
        self.repeats = RepeatScores(dim, head.max_len, n_actions) if repeat_aware else None
        # While training tunes the language model (``temporec.training.encoder_tuning``): the
        # encoder that ``text_embeddings`` come from. Saved apart (``artifacts.ENCODER_DIR``).
        self.text_encoder: nn.Module | None = None

    @property
    def n_items(self) -> int:
        return (self.item_table if self.frozen_items else self.text_embeddings).shape[0]

    @property
    def device(self) -> torch.device:
        """Where the item vectors are, and so where the model computes."""
        return (self.item_table if self.frozen_items else self.text_embeddings).device

    @property
    def frozen_items(self) -> bool:
        """Whether the item vectors are a fixed table (``freeze_items``)."""
        return "item_table" in self._buffers

    def freeze_items(self, table: torch.Tensor | None = None, dtype: torch.dtype = torch.float16) -> None:
        """Keep the catalog's item vectors as one fixed (n_items, dim) table of ``dtype``
        (``table``, or the vectors computed now) in place of what they are computed from:
        the text embeddings, the id embeddings and the feature values, the bulk of a large
        catalog's model. What serving needs and no more (a compact artifact); texts outside
        the catalog still go through the text projection; a ``scale_ids`` model keeps its
        id embeddings, which its events read apart. Not for training."""
        with torch.no_grad():
            table = self.item_vectors() if table is None else table
        del self.text_embeddings
        if not self.scale_ids:  # with scale_ids the events read the id embeddings apart: they stay
            self.item_ids = None
        self.item_features = nn.ModuleDict()
        self.register_buffer("item_table", table.detach().to(dtype).contiguous())

    def item_vectors(self, index: torch.Tensor | None = None, texts: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of catalog items ``index`` (all items when None): (..., dim). ``texts``:
        the catalog's text embeddings to use instead of the stored ones (a tuning step's)."""
        if self.frozen_items:
            return (self.item_table if index is None else self.item_table[index]).float()
        parts = []
        if self.use_text:
            table = self.text_embeddings if texts is None else texts
            text = table if index is None else table[index]
            parts.append(self.text_proj(text))
        if self.use_ids:
            ids = self.item_ids.weight if index is None else self.item_ids(index)
            if self.training and self.id_dropout and self.use_text:
                ids = ids * (torch.rand(ids.shape[:-1] + (1,), device=ids.device) >= self.id_dropout)
            parts.append(ids)
        parts.extend(feature(index) for feature in self.item_features.values())
        return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)

    def text_vectors(self, texts: torch.Tensor) -> torch.Tensor:
        """Vectors of items known only by their text embeddings."""
        if not self.use_text:
            raise ValueError("this model has no text tower: it cannot use items outside its catalog")
        return self.text_proj(texts)

    def event_vectors(self, batch: EventBatch, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, dim) event vectors. ``item_table``: ``item_vectors()`` already computed
        (training computes it once per step for the loss and reuses it here)."""
        known = batch.items.clamp(min=0)
        items = self.item_vectors(known) if item_table is None else item_table[known]
        if self.scale_ids and self.item_ids is not None:
            # As Transformers embed tokens (SASRec included): ids start small (std 1/dim) and
            # enter the events times sqrt(dim), so they weigh in the events as before but
            # learn faster; the scores read them unscaled. On a shop log of ids this
            # converged in a third of the epochs, higher (benchmarks/RESULTS.md, sasrec-gap).
            items = items + (math.sqrt(self.item_ids.embedding_dim) - 1) * self.item_ids(known)
        if batch.texts is not None:
            outside = (batch.items < 0).unsqueeze(-1)
            items = torch.where(outside, self.text_vectors(batch.texts), items)
        events = items + self.actions(batch.actions) + self.gaps(batch.gaps)
        return self.dropout(events) * batch.mask.unsqueeze(-1)

    def forward(self, batch: EventBatch, item_table: torch.Tensor | None = None) -> HeadOutput:
        events = self.event_vectors(batch, item_table)
        # Only a head that asks for them gets the timestamps: others take (events, mask) alone.
        if getattr(self.head, "reads_timestamps", False):
            return self.head(events, batch.mask, timestamps=batch.timestamps)
        return self.head(events, batch.mask)

    def scoring_states(self, states: torch.Tensor) -> torch.Tensor:
        """Head states as the left side of the score (unit length / τ for "cosine")."""
        return F.normalize(states, dim=-1) / self.temperature if self.similarity == "cosine" else states

    def scoring_items(self, vectors: torch.Tensor) -> torch.Tensor:
        """Item vectors as the right side of the score (unit length for "cosine")."""
        return F.normalize(vectors, dim=-1) if self.similarity == "cosine" else vectors

    def candidate_vectors(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Catalog items ``index`` (all when None) as scored: ``user_states @ candidate_vectors().T``."""
        return self.scoring_items(self.item_vectors(index))

    def user_states(self, batch: EventBatch) -> torch.Tensor:
        """(B, dim): the predicted next item after each history, ready to score."""
        return self.scoring_states(self(batch).states[:, -1])

    def score(
        self, states: torch.Tensor, candidates: torch.Tensor, batch: EventBatch, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C) scores of ``candidates`` (``candidate_vectors(index)``; all items when
        ``index`` is None) after each history of ``batch``, whose ``user_states`` are
        ``states``: their dot products, and a repeat-aware model's history bonus."""
        scores = states @ candidates.T
        if self.repeats is None:
            return scores
        return self.repeats.add_to(scores, states, batch.items, batch.actions, batch.mask, index)

    def repeat_bonus(self, states: torch.Tensor, batch: EventBatch):
        """For training: the history bonus after every event (``states``: (B, L, dim)
        scoring states) as (B, L, L) item columns and values (see ``losses.Bonus``); None
        for a model that is not repeat-aware."""
        if self.repeats is None:
            return None
        weights = self.repeats.weights(states, batch.items, batch.actions, batch.mask)
        items = batch.items.unsqueeze(1).expand_as(weights)
        return columns(items, weights, None, self.n_items)

    def scores(self, batch: EventBatch) -> torch.Tensor:
        """(B, n_items): one matmul for the whole batch."""
        return self.score(self.user_states(batch), self.candidate_vectors(), batch)
