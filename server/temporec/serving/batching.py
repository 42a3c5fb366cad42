"""One served model: its item vectors, its own thread, and the worker that coalesces
concurrent queries. While one batch runs, new queries queue up and the next forward pass
takes them all: one head forward, one matmul and one top-k for the batch.

Nothing of the catalog's size is made per query: a large catalog is scored in slices of
``SCORE_SLICE`` rows, each slice's best k kept, so a batch holds (batch, slice) scores at
most; the rules' few forbidden rows are set to -inf in a slice, in place; a query with a
candidate list is scored on its candidates' rows only. A model whose artifact has an
approximate index (``temporec.model.item_index``) makes no score matrix at all: the index
proposes each query's best rows, which are scored exactly as a candidate list is.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from temporec.contract.errors import PluginError, plugin_call
from temporec.contract.types import Contribution, Query
from temporec.model.artifacts import LoadedModel
from temporec.model.item_index import proposal_depth
from temporec.model.recommender import EventBatch, top_k_in_slices

#: Rows of the catalog scored at once: a slice's scores stay in the cache for its top-k,
#: and a batch of 32 over 1,000,000 items needs 8 MiB for them, not 128.
SCORE_SLICE = 65_536


@dataclass
class Listed:
    """The rows one query may get: ``rows`` (its candidates, less what the rules forbid)
    or, when None, the whole catalog less ``forbidden``."""

    rows: torch.Tensor | None  # (C,) long catalog rows
    forbidden: torch.Tensor | None  # (F,) long catalog rows, when rows is None
    whole_row: bool = False  # keep the (n_items,) score row, for a domain that decides hand-offs


@dataclass
class Prepared:
    """A validated query, mapped onto one model's catalog."""

    query: Query
    items: list[int]
    actions: list[int]
    timestamps: list[float]
    texts: list[torch.Tensor | None] | None
    listed: Listed
    rules: list[str]
    timings_ms: dict[str, float]
    explain_events: int = 0  # how many of the most recent events to weigh; 0: no explanation


@dataclass
class Ranked:
    """A prepared query's answer from its model."""

    indices: list[int]  # catalog rows, best first
    scores: list[float]
    allowed_scores: torch.Tensor | None = None  # (n_items,) the scores, -inf where forbidden (Listed.whole_row)
    contributions: list[list[Contribution]] = field(default_factory=list)  # per item, when explained


class ServingModel:
    """A loaded model with its precomputed item vectors and its request coalescer."""

    def __init__(self, loaded: LoadedModel, device: torch.device):
        self.loaded = loaded
        self.device = device
        self.model = loaded.model.to(device).eval()
        with torch.inference_mode():
            self.item_vectors = self.model.candidate_vectors()
        self.popularity = loaded.popularity.to(device)
        self.index = loaded.index
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        # The model's own thread: a head that hangs holds this one, not a thread other
        # models need (a Python thread cannot be killed; see docs/operations.md).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="temporec-" + "-".join(loaded.manifest.key))
        self._retired = False

    def retire(self) -> None:
        """A reload replaced this model: its worker ends once the calls that chose it are
        answered, and the model is freed with the last of them."""
        self._retired = True
        if self._queue is not None:
            self._queue.put_nowait(None)  # wakes an idle worker to notice

    def shutdown(self) -> None:
        """Stop the worker and the thread (server shutdown)."""
        if self._worker:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def rank(self, prepared: Prepared) -> Ranked:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            # A context of its own: the worker serves many calls, so no call's request id is its.
            self._worker = asyncio.create_task(self._serve_batches(), context=contextvars.Context())
        future = loop.create_future()
        self._queue.put_nowait((prepared, future))
        return await future

    async def _serve_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while not (self._retired and self._queue.empty()):
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [item for item in batch if item is not None and not item[1].cancelled()]
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._rank_batch, [p for p, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _rank_batch(self, batch: list[Prepared]) -> list[Ranked]:
        started = time.perf_counter()
        with torch.inference_mode():
            events = EventBatch.from_histories(
                [p.items for p in batch],
                [p.actions for p in batch],
                [p.timestamps for p in batch],
                self.model.head.max_len,
                [p.texts or [] for p in batch] if any(p.texts for p in batch) else None,
            ).to(self.device)
            states = self._user_states(events)
            head_done = time.perf_counter()
            results = self._scored(states, events, batch)
        scored = time.perf_counter()
        for p, ranked in zip(batch, results):
            p.timings_ms["head"] = (head_done - started) * 1000
            p.timings_ms["score"] = (scored - head_done) * 1000
            if p.explain_events and ranked.indices:
                explained = time.perf_counter()
                ranked.contributions = self._explain(p, ranked.indices)
                p.timings_ms["explain"] = (time.perf_counter() - explained) * 1000
        return results

    def _user_states(self, events: EventBatch) -> torch.Tensor:
        """The head's states for ``events``, checked: one finite row per history."""
        head = self.loaded.manifest.head
        states = plugin_call(f"head {head!r}", self.model.user_states, events)
        if states.shape != (events.items.shape[0], self.item_vectors.shape[1]) or not torch.isfinite(states).all():
            raise PluginError(
                f"head {head!r} returned unusable states (shape {tuple(states.shape)} or non-finite values)"
            )
        return states

    def _explain(self, prepared: Prepared, items: list[int]) -> list[list[Contribution]]:
        """Occlusion, per item: each of the most recent ``explain_events`` events weighs
        score(item | history) - score(item | history without the event), from one
        forward pass over the history and its leave-one-out copies. Works with any head."""
        length = len(prepared.items)
        weighed = range(length - min(prepared.explain_events, length, self.model.head.max_len), length)
        columns = [prepared.items, prepared.actions, prepared.timestamps, prepared.texts or [None] * length]
        rows = [[column] + [column[:t] + column[t + 1 :] for t in weighed] for column in columns]
        with torch.inference_mode():
            events = EventBatch.from_histories(*rows[:3], self.model.head.max_len, rows[3] if prepared.texts else None)
            events = events.to(self.device)
            index = torch.tensor(items, device=self.device)
            scores = self.model.score(self._user_states(events), self.item_vectors[index], events, index)
            weights = (scores[0] - scores[1:]).T.tolist()
        history = prepared.query.history
        return [
            sorted((Contribution(t, history[t].item_id, w) for t, w in zip(weighed, row)), key=lambda c: -c.weight)
            for row in weights
        ]

    async def classify(self, vectors: torch.Tensor, action: int = 0) -> torch.Tensor:
        """(n, n_items) probabilities over the catalog for n one-event histories, each the
        text whose vector is a row of ``vectors``: a model over a small catalog (sentiment
        labels, intents) as a classifier. One forward pass on the model's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._classify, vectors, action)

    def _classify(self, vectors: torch.Tensor, action: int) -> torch.Tensor:
        rows = len(vectors)
        with torch.inference_mode():
            events = EventBatch.from_histories(
                [[-1]] * rows, [[action]] * rows, [[0.0]] * rows, self.model.head.max_len, [[v] for v in vectors]
            ).to(self.device)
            scores = self.model.score(self._user_states(events), self.item_vectors, events)
            return torch.softmax(scores.float(), dim=-1).cpu()

    def cold_start(self, prepared: Prepared) -> Ranked:
        """Popularity ranking for an empty history."""
        started = time.perf_counter()
        result = self._cold_start_ranked(prepared)
        prepared.timings_ms["score"] = (time.perf_counter() - started) * 1000
        return result

    def _scored(self, states: torch.Tensor, events: EventBatch, batch: list[Prepared]) -> list[Ranked]:
        """Each query's top k: the queries over the whole catalog scored together, their
        candidates' rows alone for the others."""
        results: list[Ranked | None] = [None] * len(batch)
        if self.index is not None:
            self._propose(states, events, batch)
        self._score_listed(states, events, batch, results)
        whole = [b for b, p in enumerate(batch) if p.listed.rows is None]
        if whole:
            if len(whole) < len(batch):
                pick = torch.tensor(whole, device=self.device)
                states, events = states[pick], events.map(lambda t: t[pick])
            for b, ranked in zip(whole, self._top_k_whole(states, events, [batch[b] for b in whole])):
                results[b] = ranked
        return results

    def _score_listed(self, states: torch.Tensor, events: EventBatch, batch: list[Prepared], results: list) -> None:
        """The queries with candidate lists (a request's, or the index's proposals), in
        groups of at most ``SCORE_SLICE`` rows between them: a group's rows are scored at
        once for all its queries (one matmul, not one a query), each query reading its own."""
        listed = [b for b, p in enumerate(batch) if p.listed.rows is not None]
        group, size = [], 0
        for b in listed:
            if group and size + len(batch[b].listed.rows) > SCORE_SLICE:
                self._top_k_rows(states, events, batch, group, results)
                group, size = [], 0
            group.append(b)
            size += len(batch[b].listed.rows)
        if group:
            self._top_k_rows(states, events, batch, group, results)

    def _top_k_rows(self, states, events: EventBatch, batch: list[Prepared], group: list[int], results: list) -> None:
        """Each query of ``group``'s best k of its own rows, from the scores of their union."""
        pick = torch.tensor(group, device=self.device)
        listed = [batch[b].listed.rows for b in group]
        rows = torch.nn.utils.rnn.pad_sequence(listed, batch_first=True, padding_value=-1).to(self.device)
        union, columns = torch.unique(rows.clamp(min=0), return_inverse=True)
        scores = self.model.score(states[pick], self.item_vectors[union], events.map(lambda t: t[pick]), union)
        scores = scores.float().gather(1, columns).masked_fill(rows < 0, float("-inf"))
        k = min(max(batch[b].query.k for b in group), rows.shape[1])
        values, positions = scores.topk(k, dim=1)
        best = rows.gather(1, positions)
        for q, b in enumerate(group):
            p = batch[b]
            if p.listed.whole_row:
                results[b] = self._top_k_listed(scores[q, : len(listed[q])], rows[q, : len(listed[q])], p)
            else:
                results[b] = _ranked(best[q].tolist(), values[q].tolist(), p.query.k, None)

    def _propose(self, states: torch.Tensor, events: EventBatch, batch: list[Prepared]) -> None:
        """Turn each whole-catalog query into a candidate list: the index's proposals (and,
        for a repeat-aware model, the history's items, whose bonus the index cannot see),
        less the forbidden rows."""
        whole = [b for b, p in enumerate(batch) if p.listed.rows is None]
        if not whole:
            return
        depth = max(proposal_depth(p.query.k, len(p.listed.forbidden)) for p in batch)
        proposals = self.index.search(states[whole], min(depth, len(self.item_vectors)))
        for b, rows in zip(whole, proposals):
            p = batch[b]
            rows = rows[rows >= 0]
            if self.model.repeats is not None:
                rows = torch.cat([rows, events.items[b][events.mask[b] & (events.items[b] >= 0)].cpu()])
            rows = rows.unique()
            rows = rows[~torch.isin(rows, p.listed.forbidden)]
            p.listed = Listed(rows, None, p.listed.whole_row)

    def _top_k_whole(self, states: torch.Tensor, events: EventBatch, batch: list[Prepared]) -> list[Ranked]:
        """The best k of the whole catalog after each history, less its forbidden rows: from
        one score matrix for a small catalog (or a domain that keeps the whole row), slice
        by slice for a large one."""
        n_items = len(self.item_vectors)
        k = min(max(p.query.k for p in batch), n_items)
        if n_items <= SCORE_SLICE or any(p.listed.whole_row for p in batch):
            scores = self._scores_of(states, events, batch, 0, n_items)
            values, indices = scores.topk(k, dim=1)
        else:
            scores_of = functools.partial(self._scores_of, states, events, batch)
            (values, indices), scores = top_k_in_slices(scores_of, n_items, k, SCORE_SLICE), None
        return [
            _ranked(row_indices, row_values, p.query.k, scores[b] if p.listed.whole_row else None)
            for b, (p, row_values, row_indices) in enumerate(zip(batch, values.tolist(), indices.tolist()))
        ]

    def _scores_of(self, states: torch.Tensor, events: EventBatch, batch: list[Prepared], start: int, stop: int):
        """(B, stop - start) scores of the catalog's rows start..stop, the forbidden ones -inf."""
        whole = stop - start == len(self.item_vectors)
        # only a repeat-aware model's bonus needs the slice's rows named
        rows = None if whole or self.model.repeats is None else torch.arange(start, stop, device=self.device)
        scores = self.model.score(states, self.item_vectors[start:stop], events, rows).float()
        for row, p in zip(scores, batch):
            forbidden = p.listed.forbidden
            if not whole:
                forbidden = forbidden[(forbidden >= start) & (forbidden < stop)] - start
            if len(forbidden):
                row[forbidden.to(scores.device)] = float("-inf")
        return scores

    def _top_k_listed(self, scores: torch.Tensor, rows: torch.Tensor, p: Prepared) -> Ranked:
        """``scores`` (C,) of the catalog ``rows``."""
        values, positions = scores.topk(min(p.query.k, len(rows)))
        whole = None
        if p.listed.whole_row:  # small catalogs (the domains that hand off): a row of their size
            whole = torch.full((len(self.item_vectors),), float("-inf"), device=scores.device)
            whole[rows] = scores
        return _ranked(rows[positions].tolist(), values.tolist(), p.query.k, whole)

    def _cold_start_ranked(self, p: Prepared) -> Ranked:
        """The most popular items the query may get, without copying the popularity."""
        listed = p.listed
        if listed.rows is not None:
            rows = listed.rows.to(self.popularity.device)
            return self._top_k_listed(self.popularity[rows].float(), rows, p)
        forbidden = set(listed.forbidden.tolist())
        values, indices = self.popularity.float().topk(min(p.query.k + len(forbidden), len(self.popularity)))
        kept = [(i, v) for i, v in zip(indices.tolist(), values.tolist()) if i not in forbidden][: p.query.k]
        return Ranked([i for i, _ in kept], [v for _, v in kept])


def _ranked(indices: list[int], values: list[float], k: int, whole: torch.Tensor | None) -> Ranked:
    """The first ``k`` of ``indices`` whose score is not -inf (forbidden)."""
    keep = [i for i, v in enumerate(values[:k]) if v != float("-inf")]
    return Ranked([indices[i] for i in keep], [values[i] for i in keep], whole)
