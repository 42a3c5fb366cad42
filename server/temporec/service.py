"""The transport-independent core: validates a query, composes domain x head x encoder,
and answers it. The gRPC layer (temporec.grpc) only translates to and from these types.

Concurrent queries to the same model are coalesced: while one batch runs, new queries
queue up and the next forward pass takes them all (one head forward, one matmul + top-k).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from temporec.artifacts import LoadedModel, find_artifacts, load_model
from temporec.devices import resolve_device
from temporec.domains import Domain, check_compatible
from temporec.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PluginError,
    ResourceExhausted,
    TemporecError,
    allowed,
)
from temporec.model import EventBatch
from temporec.options import option_defaults, option_text, read_options
from temporec.plugins import Registry
from temporec.types import Contribution, Event, HandOff, Limits, Query, Recommendation, ScoredItem

log = logging.getLogger(__name__)


@dataclass
class ComponentInfo:
    kind: str
    name: str
    plugin: str
    description: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelInfo:
    domain: str
    head: str
    encoder: str
    version: str
    path: str
    data_name: str
    data_fingerprint: str
    metrics: dict[str, float]
    items: int
    created: str


@dataclass
class Components:
    encoders: list[ComponentInfo]
    heads: list[ComponentInfo]
    domains: list[ComponentInfo]
    models: list[ModelInfo]


@dataclass
class ReloadResult:
    reloaded: bool  # False: the reload failed and the previous models still serve
    models: list[ModelInfo]  # the models served after the reload
    errors: list[str] = field(default_factory=list)  # why it failed, one line per artifact


def plugin_call(what: str, fn: Callable, *args: Any) -> Any:
    """Run plugin code; anything it raises besides a TemporecError becomes a PluginError."""
    try:
        return fn(*args)
    except TemporecError:
        raise
    except Exception as exc:
        log.exception("plugin failure in %s", what)
        raise PluginError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


@dataclass
class _Prepared:
    """A validated query, mapped onto one model's catalog."""

    query: Query
    items: list[int]
    actions: list[int]
    timestamps: list[float]
    texts: list[torch.Tensor | None] | None
    allowed: torch.Tensor  # (n_items,) bool
    rules: list[str]
    timings_ms: dict[str, float]
    explain_events: int = 0  # how many of the most recent events to weigh; 0: no explanation


@dataclass
class _Ranked:
    """A prepared query's answer from its model."""

    indices: list[int]  # catalog rows, best first
    scores: list[float]
    allowed_scores: torch.Tensor  # (n_items,) the ranking scores, -inf where forbidden
    contributions: list[list[Contribution]] = field(default_factory=list)  # per item, when explained


class _ServingModel:
    """A loaded model with its precomputed item vectors and its request coalescer."""

    def __init__(self, loaded: LoadedModel, device: torch.device):
        self.loaded = loaded
        self.device = device
        self.model = loaded.model.to(device).eval()
        with torch.inference_mode():
            self.item_vectors = self.model.candidate_vectors()
        self.popularity = loaded.popularity.to(device)
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

    async def rank(self, prepared: _Prepared) -> _Ranked:
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

    def _rank_batch(self, batch: list[_Prepared]) -> list[_Ranked]:
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
            scores = states @ self.item_vectors.T
            results = self._top_k(scores, batch)
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
            raise PluginError(f"head {head!r} returned unusable states (shape {tuple(states.shape)} or non-finite values)")
        return states

    def _explain(self, prepared: _Prepared, items: list[int]) -> list[list[Contribution]]:
        """Occlusion, per item: each of the most recent ``explain_events`` events weighs
        score(item | history) - score(item | history without the event), from one
        forward pass over the history and its leave-one-out copies. Works with any head."""
        length = len(prepared.items)
        weighed = range(length - min(prepared.explain_events, length, self.model.head.max_len), length)
        columns = [prepared.items, prepared.actions, prepared.timestamps, prepared.texts or [None] * length]
        rows = [[column] + [column[:t] + column[t + 1 :] for t in weighed] for column in columns]
        with torch.inference_mode():
            events = EventBatch.from_histories(*rows[:3], self.model.head.max_len, rows[3] if prepared.texts else None)
            scores = self._user_states(events.to(self.device)) @ self.item_vectors[items].T  # (1 + events, items)
            weights = (scores[0] - scores[1:]).T.tolist()
        history = prepared.query.history
        return [
            sorted((Contribution(t, history[t].item_id, w) for t, w in zip(weighed, row)), key=lambda c: -c.weight)
            for row in weights
        ]

    def cold_start(self, prepared: _Prepared) -> _Ranked:
        """Popularity ranking for an empty history."""
        started = time.perf_counter()
        result = self._top_k(self.popularity.unsqueeze(0), [prepared])[0]
        prepared.timings_ms["score"] = (time.perf_counter() - started) * 1000
        return result

    def _top_k(self, scores: torch.Tensor, batch: list[_Prepared]) -> list[_Ranked]:
        allowed_rows = torch.stack([p.allowed for p in batch]).to(scores.device)
        scores = scores.float().masked_fill(~allowed_rows, float("-inf"))
        k = min(max(p.query.k for p in batch), scores.shape[1])
        values, indices = scores.topk(k, dim=1)
        results = []
        for p, row, row_values, row_indices in zip(batch, scores, values.tolist(), indices.tolist()):
            keep = [i for i, v in enumerate(row_values[: p.query.k]) if v != float("-inf")]
            results.append(_Ranked([row_indices[i] for i in keep], [row_values[i] for i in keep], row))
        return results


class RecommenderService:
    def __init__(
        self,
        registry: Registry,
        models_dir: str | Path | None,
        encoder_options: dict[str, dict] | None = None,
        default_encoder: str = "local",
        encoder_substitutes: dict[str, str] | None = None,
        limits: Limits | None = None,
        device: str = "auto",
    ):
        self.registry = registry
        self.models_dir = Path(models_dir) if models_dir else None
        self.encoder_options = encoder_options or {}
        # trained-with encoder -> encoder that serves it (same vector space, e.g. local -> triton)
        self.encoder_substitutes = encoder_substitutes or {}
        self.default_encoder = default_encoder
        self.limits = limits or Limits()
        self.device = resolve_device(device)
        self.domains = {name: cls() for name, cls in registry.domains.items()}
        self.models: dict[tuple[str, str, str], _ServingModel] = {}
        self._encoders: dict[str, Any] = {}
        self._encoder_starts: dict[str, asyncio.Task] = {}  # encoders being created
        self._reload_lock = asyncio.Lock()
        self._ready = False

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Load every artifact under models_dir; the newest version wins per key.
        An artifact that fails to load is logged and skipped."""
        self.models, errors = await asyncio.to_thread(self._load_models)
        for error in errors:
            log.error("skipping model %s", error)
        self._ready = True
        log.info("loaded %d model(s) on %s", len(self.models), self.device)

    def _load_models(self) -> tuple[dict[tuple[str, str, str], _ServingModel], list[str]]:
        """The newest model per key under models_dir, ready to serve, and one error
        message per artifact that could not be loaded."""
        newest: dict[tuple[str, str, str], LoadedModel] = {}
        errors = []
        for path in find_artifacts(self.models_dir) if self.models_dir else []:
            try:
                model = load_model(path, self.registry.heads)
            except Exception as exc:
                errors.append(str(exc) if isinstance(exc, TemporecError) else f"{path}: {type(exc).__name__}: {exc}")
                continue
            key = model.manifest.key
            if key[0] not in self.domains:
                errors.append(f"{path}: domain {key[0]!r} is not installed (installed: {allowed(self.domains)})")
            elif key not in newest or model.version > newest[key].version:
                newest[key] = model
        return {key: _ServingModel(model, self.device) for key, model in newest.items()}, errors

    async def reload(self) -> ReloadResult:
        """Load every artifact under models_dir again, in a worker thread, and serve the
        new set only when every artifact loaded. One assignment swaps all models, so a
        call sees the old set or the new one, never a mix; calls in flight finish on the
        model they chose. When anything fails, the old set keeps serving and the result
        says why."""
        async with self._reload_lock:
            try:
                fresh, errors = await asyncio.to_thread(self._load_models)
            except Exception as exc:  # e.g. out of memory while moving a model to the device
                fresh, errors = {}, [f"{self.models_dir}: {type(exc).__name__}: {exc}"]
            if not fresh and not errors:
                errors = [f"{self.models_dir}: no model artifact found; refusing to serve none"]
            if errors:
                for serving in fresh.values():
                    serving.shutdown()
                log.error("reload failed, still serving the %d previous model(s): %s", len(self.models), "; ".join(errors))
                return ReloadResult(False, self.components().models, errors)
            retired, self.models = self.models, fresh
            for serving in retired.values():
                serving.retire()
            log.info("reloaded: serving %d model(s)", len(self.models))
            return ReloadResult(True, self.components().models)

    def ready(self) -> bool:
        return self._ready

    async def encoder_health(self, timeout: float = 2.0) -> dict[str, bool]:
        """Whether each started encoder can serve now (``Encoder.healthy``); an encoder
        that raises or takes longer than ``timeout`` seconds counts as unhealthy."""

        async def check(encoder) -> bool:
            try:
                return bool(await asyncio.wait_for(encoder.healthy(), timeout))
            except Exception:
                return False

        encoders = dict(self._encoders)
        results = await asyncio.gather(*(check(encoder) for encoder in encoders.values()))
        return dict(zip(encoders, results))

    async def close(self) -> None:
        self._ready = False
        for serving in self.models.values():
            serving.shutdown()
        for encoder in self._encoders.values():
            plugin_call(f"encoder {encoder.name!r} close", encoder.close)

    # -- recommend ----------------------------------------------------------------

    async def recommend(self, query: Query, timeout: float | None = None) -> Recommendation:
        """Answer one query; ``timeout`` is the caller's remaining deadline in seconds."""
        if timeout is None:
            return await self._recommend(query, None)
        deadline = asyncio.get_running_loop().time() + timeout
        return await asyncio.wait_for(self._recommend(query, deadline), timeout)

    async def _recommend(self, query: Query, deadline: float | None) -> Recommendation:
        domain = self._domain(query)
        # Options are read before any rule runs: unknown ones are refused even where no rule reads them.
        query = replace(query, options=read_options(query, domain.request_options))
        serving = self._choose_model(query, domain)
        prepared = await self._prepare(query, serving, deadline)
        cold = not prepared.items
        ranked = serving.cold_start(prepared) if cold else await serving.rank(prepared)
        catalog = serving.loaded.catalog
        hand_off = None if cold else self._hand_off(domain, query, ranked, catalog)
        if hand_off:
            prepared.rules.append("handoff")
        explained = ranked.contributions or [[] for _ in ranked.indices]
        manifest = serving.loaded.manifest
        return Recommendation(
            items=[
                ScoredItem(catalog.item_ids[i], s, catalog.texts[i], contributions)
                for i, s, contributions in zip(ranked.indices, ranked.scores, explained)
            ],
            domain=manifest.domain,
            head="popularity" if cold else manifest.head,
            encoder=self.serving_encoder(manifest.encoder),
            model_version=manifest.version,
            cold_start=cold,
            candidate_source="request" if query.candidates else "catalog",
            rules_applied=prepared.rules,
            timings_ms=prepared.timings_ms,
            hand_off=hand_off,
        )

    def _hand_off(self, domain: Domain, query: Query, ranked: _Ranked, catalog) -> HandOff | None:
        what = f"domain {domain.name!r} hand_off"
        decision = plugin_call(what, domain.hand_off, query, ranked.allowed_scores, catalog)
        if decision is not None and not isinstance(decision, HandOff):
            raise PluginError(f"{what} returned {type(decision).__name__}, not a HandOff or None")
        return decision

    def serving_encoder(self, trained_with: str) -> str:
        """The encoder that embeds texts for a model trained with ``trained_with``."""
        return self.encoder_substitutes.get(trained_with, trained_with)

    def _domain(self, query: Query) -> Domain:
        """The query's domain, once the named components exist and the head can read the
        domain's data (``FAILED_PRECONDITION`` otherwise, before looking for a model)."""
        if query.domain not in self.domains:
            raise NotFound(f"domain: unknown domain {query.domain!r}; known domains: {allowed(self.domains)}")
        if query.head and query.head not in self.registry.heads:
            raise NotFound(f"head: unknown head {query.head!r}; installed heads: {allowed(self.registry.heads)}")
        if query.encoder and query.encoder not in self.registry.encoders:
            raise NotFound(f"encoder: unknown encoder {query.encoder!r}; installed: {allowed(self.registry.encoders)}")
        domain = self.domains[query.domain]
        if query.head:
            check_compatible(self.registry.heads[query.head], domain)
        return domain

    def _choose_model(self, query: Query, domain: Domain) -> _ServingModel:
        candidates = [
            (key, serving)
            for key, serving in self.models.items()
            if key[0] == query.domain and (not query.encoder or self.serving_encoder(key[2]) == query.encoder)
        ]
        head = query.head or domain.default_head
        matching = [serving for key, serving in candidates if key[1] == head]
        if not matching and not query.head and candidates:
            matching = [serving for _, serving in candidates]  # the domain's default head has no model
        if not matching:
            loaded = [f"{h} ({e})" for (d, h, e) in self.models if d == query.domain]
            raise NotFound(
                f"head: no model is loaded for domain {query.domain!r} with head {head!r}"
                + (f" and encoder {query.encoder!r}" if query.encoder else "")
                + f"; loaded for this domain: {', '.join(loaded) or '(none)'}"
            )
        chosen = max(matching, key=lambda serving: serving.loaded.version)
        check_compatible(self.registry.heads[chosen.loaded.manifest.head], domain)  # e.g. a model older than the rule
        return chosen

    def _check_limits(self, query: Query) -> None:
        """Malformed values are INVALID_ARGUMENT; sizes past a configured limit RESOURCE_EXHAUSTED."""
        limits = self.limits
        if query.k < 1:
            raise InvalidArgument(f"k: must be at least 1, got {query.k}")
        if query.explain_events < 0:
            raise InvalidArgument(f"explain_events: must not be negative, got {query.explain_events}")
        for name, size, key in (
            ("k", query.k, "max_k"),
            ("history", len(query.history), "max_history"),
            ("candidate_item_ids", len(query.candidates), "max_candidates"),
            ("explain_events", query.explain_events, "max_explain_events"),
        ):
            if size > getattr(limits, key):
                raise ResourceExhausted(f"{name}: at most {getattr(limits, key)} (limits.{key}), got {size}")

    async def _prepare(self, query: Query, serving: _ServingModel, deadline: float | None = None) -> _Prepared:
        self._check_limits(query)
        started = time.perf_counter()
        loaded = serving.loaded
        catalog, actions = loaded.catalog, loaded.manifest.actions
        items, action_ids, timestamps, outside = [], [], [], {}
        previous_time = 0.0
        for i, event in enumerate(query.history):
            self._check_event(i, event, actions, previous_time)
            previous_time = event.timestamp or previous_time
            index = catalog.index.get(event.item_id, -1) if event.item_id else -1
            if index < 0:
                if not event.text:
                    raise NotFound(
                        f"history[{i}].item_id: {event.item_id!r} is not in the catalog of domain "
                        f"{query.domain!r}; send the item's text in history[{i}].text to use it"
                    )
                outside[i] = event.text
            items.append(index)
            action_ids.append(actions.index(event.action) if event.action else 0)
            timestamps.append(event.timestamp)
        texts = await self._outside_texts(outside, len(items), loaded, deadline) if outside else None
        encoded = time.perf_counter()
        allowed_items, rules = self._allowed(query, [i for i in items if i >= 0], serving)
        timings = {"encode": (encoded - started) * 1000, "rules": (time.perf_counter() - encoded) * 1000}
        explain_events = (query.explain_events or self.limits.max_explain_events) if query.explain else 0
        return _Prepared(query, items, action_ids, timestamps, texts, allowed_items, rules, timings, explain_events)

    def _check_event(self, i: int, event: Event, actions: list[str], previous_time: float) -> None:
        if not event.item_id and not event.text:
            raise InvalidArgument(f"history[{i}]: an event needs an item_id, a text, or both")
        if len(event.item_id) > self.limits.max_item_id_chars:
            raise ResourceExhausted(
                f"history[{i}].item_id: longer than {self.limits.max_item_id_chars} characters (limits.max_item_id_chars)"
            )
        if len(event.text) > self.limits.max_text_chars:
            raise ResourceExhausted(f"history[{i}].text: longer than {self.limits.max_text_chars} characters (limits.max_text_chars)")
        if event.action and event.action not in actions:
            raise InvalidArgument(f"history[{i}].action: {event.action!r} is not allowed; allowed: {allowed(actions)}")
        if event.timestamp < 0:
            raise InvalidArgument(f"history[{i}].timestamp: must not be negative")
        if event.timestamp and event.timestamp < previous_time:
            raise InvalidArgument(f"history[{i}].timestamp: earlier than the event before it; send the history oldest first")

    async def _outside_texts(
        self, outside: dict[int, str], length: int, loaded: LoadedModel, deadline: float | None = None
    ) -> list:
        """Embed the texts of events whose items the catalog lacks, with the model's encoder."""
        manifest = loaded.manifest
        if not manifest.use_text:
            raise FailedPrecondition(
                f"history: items outside the catalog need a text-based model; {manifest.head!r} for "
                f"{manifest.domain!r} was trained on item ids only"
            )
        encoder = await self._encoder(self.serving_encoder(manifest.encoder))
        if encoder.model_id != manifest.encoder_model_id:
            raise FailedPrecondition(
                f"encoder {encoder.name!r} is configured with {encoder.model_id!r}, but the model was "
                f"trained on {manifest.encoder_model_id!r} embeddings"
            )
        remaining = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)
        vectors = await self._encode_with(encoder, list(outside.values()), remaining)
        texts: list[torch.Tensor | None] = [None] * length
        for position, vector in zip(outside, vectors):
            texts[position] = vector
        return texts

    def _allowed(self, query: Query, history: list[int], serving: _ServingModel) -> tuple[torch.Tensor, list[str]]:
        catalog = serving.loaded.catalog
        if query.candidates:
            unknown = [c for c in query.candidates if c not in catalog.index]
            if unknown:
                raise NotFound(f"candidate_item_ids: not in the catalog of domain {query.domain!r}: {unknown[:5]}")
            allowed_items = torch.zeros(len(catalog), dtype=torch.bool)
            allowed_items[[catalog.index[c] for c in query.candidates]] = True
        else:
            allowed_items = torch.ones(len(catalog), dtype=torch.bool)
        domain = self.domains[query.domain]
        rules = plugin_call(f"domain {query.domain!r} rules", domain.apply_rules, query, history, catalog, allowed_items)
        return allowed_items, list(rules)

    # -- encode -------------------------------------------------------------------

    async def encode(self, texts: list[str], encoder: str = "", timeout: float | None = None) -> tuple[str, torch.Tensor]:
        name = encoder or self.default_encoder
        if not texts:
            raise InvalidArgument("texts: send at least one text")
        if len(texts) > self.limits.max_encode_texts:
            raise ResourceExhausted(
                f"texts: at most {self.limits.max_encode_texts} texts (limits.max_encode_texts), got {len(texts)}"
            )
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_text_chars:
                raise ResourceExhausted(f"texts[{i}]: longer than {self.limits.max_text_chars} characters (limits.max_text_chars)")
        if timeout is None:
            return name, await self._encode_with(await self._encoder(name), texts)
        deadline = asyncio.get_running_loop().time() + timeout

        async def work() -> torch.Tensor:
            instance = await self._encoder(name)
            return await self._encode_with(instance, texts, max(deadline - asyncio.get_running_loop().time(), 0.0))

        return name, await asyncio.wait_for(work(), timeout)

    async def _encode_with(self, encoder, texts: list[str], timeout: float | None = None) -> torch.Tensor:
        try:
            vectors = await encoder.aencode(texts, timeout)
        except (TemporecError, asyncio.TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("encoder %s failed", encoder.name)
            raise PluginError(f"encoder {encoder.name!r} failed: {type(exc).__name__}: {exc}") from exc
        if tuple(vectors.shape) != (len(texts), encoder.dim) or not torch.isfinite(vectors).all():
            raise PluginError(f"encoder {encoder.name!r} returned unusable vectors of shape {tuple(vectors.shape)}")
        return vectors

    async def _encoder(self, name: str):
        """The encoder instance for ``name``, created on first use (loading can take seconds).

        Creating it is one task per name, shared by the calls that need it: a call that
        gives up (its deadline) leaves the task running for the next, so a slow load is
        neither repeated nor lost. A failed start is forgotten, and the next call retries."""
        if name not in self.registry.encoders:
            raise NotFound(f"encoder: unknown encoder {name!r}; installed: {allowed(self.registry.encoders)}")
        if name in self._encoders:
            return self._encoders[name]
        task = self._encoder_starts.get(name)
        if task is None:
            task = self._encoder_starts[name] = asyncio.create_task(self._start_encoder(name), context=contextvars.Context())
        return await asyncio.shield(task)

    async def _start_encoder(self, name: str):
        cls, options = self.registry.encoders[name], self.encoder_options.get(name, {})
        start = lambda: cls(**options)  # noqa: E731
        try:
            self._encoders[name] = await asyncio.to_thread(plugin_call, f"encoder {name!r} start", start)
            return self._encoders[name]
        finally:
            del self._encoder_starts[name]

    # -- discovery ----------------------------------------------------------------

    def components(self) -> Components:
        def infos(kind: str) -> list[ComponentInfo]:
            owners = {name: p.name for p in self.registry.plugins for name in p.registered[kind]}
            result = []
            for name, cls in sorted(self.registry.kind(kind).items()):
                description = getattr(cls, "description", "") or (cls.__doc__ or "").strip().split("\n")[0]
                result.append(ComponentInfo(kind[:-1], name, owners.get(name, ""), description, self._details(kind, name, cls)))
            return result

        models = [
            ModelInfo(
                m.domain, m.head, self.serving_encoder(m.encoder), m.version, str(s.loaded.path), m.data_name,
                m.data_fingerprint, dict(m.metrics), len(s.loaded.catalog), m.created,
            )
            for s in self.models.values()
            for m in [s.loaded.manifest]
        ]
        return Components(infos("encoders"), infos("heads"), infos("domains"), models)

    def _details(self, kind: str, name: str, cls) -> dict[str, str]:
        if kind == "heads":
            requires = {"requires": ",".join(sorted(cls.requires))} if cls.requires else {}
            return {f"option.{k}": str(v) for k, v in cls.options.items()} | requires
        if kind == "domains":
            options = {f"option.{k}": option_text(v) for k, v in option_defaults(cls.request_options).items()}
            provides = ",".join(sorted(cls.provides))
            return {"actions": ",".join(cls.actions), "default_head": cls.default_head, "provides": provides, **options}
        if name in self._encoders:
            return dict(self._encoders[name].describe())
        return {f"option.{k}": str(v) for k, v in self.encoder_options.get(name, {}).items()}
