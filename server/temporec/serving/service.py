"""The transport-independent core: validates a query, composes domain x head x encoder,
and answers it. The gRPC layer (``temporec.grpc``) only translates to and from these
types; ``build_service`` makes one from the server's configuration.

    model_set      which models are served, and which one answers a query
    batching       one model's coalescing worker: a batch per forward pass
    validation     request checks before any model runs
    encoder_pool   the encoders, warmed at start or created on first use, and their caches
    history        users' tracked events in the configured store
    components     what ListComponents reports
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from temporec.contract.domains import Domain, Forbidden, check_compatible, hands_off
from temporec.contract.encoders import Encoder
from temporec.contract.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PluginError,
    Unavailable,
    allowed,
    plugin_call,
)
from temporec.contract.options import read_options
from temporec.contract.registry import Registry, load_registry
from temporec.contract.stores import Exposure, Store
from temporec.contract.types import HandOff, Limits, Query, Recommendation, ScoredItem
from temporec.model.artifacts import LoadedModel, Manifest
from temporec.model.devices import resolve_device
from temporec.serving.batching import Listed, Prepared, Ranked, ServingModel
from temporec.serving.components import list_components
from temporec.serving.config import ServerConfig, check_experiment_store, resolve_experiments
from temporec.serving.encoder_pool import EncoderPool
from temporec.serving.experiments import Arm, Experiment, assign
from temporec.serving.history import HOW_TO_CONFIGURE, History, open_store, readable
from temporec.serving.model_set import ModelKey, choose_model, load_models
from temporec.serving.records import Classified, Components, ReloadResult
from temporec.serving.validation import check_after, check_event, check_limits, check_texts

log = logging.getLogger(__name__)

WARM_UP_SECONDS = 120.0  # for each model's encoder to start and embed one text at start-up


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
        store: Store | None = None,
        experiments: dict[str, Experiment] | None = None,
        warm_encoders: bool = False,
        encoder_cache_size: int = 0,
    ):
        self.registry = registry
        self.models_dir = Path(models_dir) if models_dir else None
        # trained-with encoder -> encoder that serves it (same vector space, e.g. local -> triton)
        self.encoder_substitutes = encoder_substitutes or {}
        self.default_encoder = default_encoder
        self.limits = limits or Limits()
        self.device = resolve_device(device)
        self.domains = {name: cls() for name, cls in registry.domains.items()}
        self.models: dict[ModelKey, ServingModel] = {}
        self.encoders = EncoderPool(registry.encoders, encoder_options or {}, encoder_cache_size)
        self.warm_encoders = warm_encoders  # start the models' encoders in start() and reload()
        self.history = History(store, self.limits)
        self.experiments = resolve_experiments(experiments or {}, self.domains, registry.heads, registry.encoders)
        check_experiment_store(self.experiments, store)
        self._reload_lock = asyncio.Lock()
        self.on_exposure: Callable[[str, str], None] | None = None  # (experiment, arm): e.g. metrics
        self._ready = False

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Load every artifact under models_dir; the newest version wins per key.
        An artifact that fails to load is logged and skipped."""
        self.models, errors = await asyncio.to_thread(self._load_models)
        for error in errors:
            log.error("skipping model %s", error)
        await self._warm_encoders(self.models)
        self._ready = True
        log.info("loaded %d model(s) on %s", len(self.models), self.device)

    def _load_models(self) -> tuple[dict[ModelKey, ServingModel], list[str]]:
        return load_models(self.models_dir, self.registry.heads, self.domains, self.device)

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
                log.error(
                    "reload failed, still serving the %d previous model(s): %s", len(self.models), "; ".join(errors)
                )
                return ReloadResult(False, self.components().models, errors)
            await self._warm_encoders(fresh)
            retired, self.models = self.models, fresh
            for serving in retired.values():
                serving.retire()
            log.info("reloaded: serving %d model(s)", len(self.models))
            return ReloadResult(True, self.components().models)

    def ready(self) -> bool:
        return self._ready

    async def _warm_encoders(self, models: dict[ModelKey, ServingModel]) -> None:
        """With ``warm_encoders``: start the encoder of each of ``models`` that embeds texts,
        and run one text through it, so that no request waits for a load."""
        if self.warm_encoders:
            text_models = [serving.loaded for serving in models.values() if serving.loaded.manifest.use_text]
            await asyncio.gather(*(self._warm_encoder(loaded) for loaded in text_models))

    async def _warm_encoder(self, loaded: LoadedModel) -> None:
        """A failure (a remote encoder down, say) is logged, not raised: the server serves
        catalog requests without it, and the encoder starts again on first use."""
        try:
            encoder = await asyncio.wait_for(self._model_encoder(loaded), WARM_UP_SECONDS)
            await self.encoders.warm(encoder, WARM_UP_SECONDS)
        except Exception as exc:
            log.warning(
                "model %s: its encoder did not warm up (%s: %s); it will start on first use",
                loaded.version,
                type(exc).__name__,
                exc,
            )

    async def encoder_health(self, timeout: float = 2.0) -> dict[str, bool]:
        """Whether each started encoder can serve now (see ``EncoderPool.health``)."""
        return await self.encoders.health(timeout)

    async def close(self) -> None:
        self._ready = False
        for serving in self.models.values():
            serving.shutdown()
        self.encoders.close()
        await self.history.close()

    # -- recommend ----------------------------------------------------------------

    async def recommend(self, query: Query, timeout: float | None = None) -> Recommendation:
        """Answer one query; ``timeout`` is the caller's remaining deadline in seconds."""
        if timeout is None:
            return await self._recommend(query, None)
        deadline = asyncio.get_running_loop().time() + timeout
        return await asyncio.wait_for(self._recommend(query, deadline), timeout)

    async def _recommend(self, query: Query, deadline: float | None) -> Recommendation:
        query, experiment, arm = assign(self.experiments, query)
        domain = self._domain(query)
        # Read once, before any rule runs: unknown options are refused even where no rule
        # reads them, and the domain gets its typed options.
        query = replace(query, options=read_options(query, domain.request_options))
        serving = choose_model(self.models, query, domain, self.registry.heads, self.serving_encoder)
        query, source = await self._with_stored_history(query, serving)
        prepared = await self._prepare(query, domain, serving, deadline)
        cold = not prepared.items
        ranked = serving.cold_start(prepared) if cold else await serving.rank(prepared)
        catalog = serving.loaded.catalog
        hand_off = None if cold else self._hand_off(domain, query, ranked, catalog)
        if hand_off:
            prepared.rules.append("handoff")
        explained = ranked.contributions or [[] for _ in ranked.indices]
        manifest = serving.loaded.manifest
        if arm is not None:
            await self._expose(experiment, arm, query, [catalog.item_ids[i] for i in ranked.indices])
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
            history_source=source,
            experiment=experiment.name if experiment else "",
            arm=arm.name if arm else "",
        )

    async def _with_stored_history(self, query: Query, serving: ServingModel) -> tuple[Query, str]:
        """The query with the user's stored events (the most recent the model reads) before
        its own, and where its history came from. With the store unreachable, a request that
        carries its own history is answered from it alone."""
        if not query.user_id or (self.history.store is None and query.history):
            return query, "request"
        if self.history.store is None:
            raise FailedPrecondition(
                f"user_id: a Recommend with a user_id and no history reads the user's events; {HOW_TO_CONFIGURE}"
            )
        check_limits(query, self.limits)
        length = min(serving.loaded.manifest.max_len, self.limits.max_history)
        try:
            stored = await self.history.call("Recommend", "history", query.user_id, length)
        except Unavailable as exc:
            if not query.history:
                raise
            log.warning("answering from the request's history alone: %s", exc)
            return query, "request"
        events = readable(stored, serving.loaded)
        if not events:
            return query, "request" if query.history else "store"
        check_after(query.history, events[-1].timestamp)
        history = [*events, *query.history][-max(length, len(query.history)) :]
        return replace(query, history=history), "store+request" if query.history else "store"

    async def _expose(self, experiment: Experiment, arm: Arm, query: Query, items: list[str]) -> None:
        """Log that ``arm`` showed ``items`` to the query's user. A store that fails to keep
        it loses this exposure, not the answer: the user still gets the items."""
        request_id = query.request_id or uuid.uuid4().hex
        shown_at = time.time()
        if experiment.exposure_clock == "events":  # a replay: the time of the last event read (0: unknown)
            shown_at = max((e.timestamp for e in query.history), default=0.0) or shown_at
        exposure = Exposure(experiment.name, arm.name, query.user_id, request_id, tuple(items), shown_at)
        try:
            await self.history.call("Recommend", "record_exposure", exposure)
        except Unavailable as exc:
            log.warning("experiment %r: exposure %s not logged: %s", experiment.name, request_id, exc)
            return
        if self.on_exposure is not None:
            self.on_exposure(experiment.name, arm.name)

    def _hand_off(self, domain: Domain, query: Query, ranked: Ranked, catalog) -> HandOff | None:
        if ranked.allowed_scores is None:  # the domain does not decide hand-offs
            return None
        what = f"domain {domain.name!r} hand_off"
        decision = plugin_call(what, domain.hand_off, query, ranked.allowed_scores, catalog)
        if decision is not None and not isinstance(decision, HandOff):
            raise PluginError(f"{what} returned {type(decision).__name__}, not a HandOff or None")
        return decision

    def serving_encoder(self, trained_with: str) -> str:
        """The encoder that embeds texts for a model trained with ``trained_with``."""
        return self.encoder_substitutes.get(trained_with, trained_with)

    def _domain(self, query: Query) -> Domain:
        """The query's domain, once the named components exist and a named head can read
        the domain's data (``FAILED_PRECONDITION`` otherwise, before looking for a model)."""
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

    async def _prepare(self, query: Query, domain: Domain, serving: ServingModel, deadline: float | None) -> Prepared:
        check_limits(query, self.limits)
        started = time.perf_counter()
        loaded = serving.loaded
        catalog, actions = loaded.catalog, loaded.manifest.actions
        items, action_ids, timestamps, outside = [], [], [], {}
        previous_time = 0.0
        for i, event in enumerate(query.history):
            check_event(i, event, actions, previous_time, self.limits)
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
        listed, rules = self._forbidden(query, domain, [i for i in items if i >= 0], serving)
        listed.whole_row = hands_off(domain)
        timings = {"encode": (encoded - started) * 1000, "rules": (time.perf_counter() - encoded) * 1000}
        explain_events = (query.explain_events or self.limits.max_explain_events) if query.explain else 0
        return Prepared(query, items, action_ids, timestamps, texts, listed, rules, timings, explain_events)

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
        encoder = await self._model_encoder(loaded)
        remaining = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)
        vectors = await self.encoders.encode(encoder, list(outside.values()), remaining)
        texts: list[torch.Tensor | None] = [None] * length
        for position, vector in zip(outside, vectors):
            texts[position] = vector
        return texts

    async def _model_encoder(self, loaded: LoadedModel) -> Encoder:
        """The encoder that embeds texts as ``loaded``'s catalog items were: the language
        model its training tuned, or the configured encoder that serves its vector space."""
        return await (self._tuned_encoder(loaded) if loaded.manifest.tuned_encoder else self._encoder(loaded.manifest))

    async def _encoder(self, manifest: Manifest) -> Encoder:
        """The configured encoder that serves ``manifest``'s model, checked to embed alike."""
        encoder = await self.encoders.get(self.serving_encoder(manifest.encoder))
        if encoder.model_id != manifest.encoder_model_id:
            raise FailedPrecondition(
                f"encoder {encoder.name!r} is configured with {encoder.model_id!r}, but the model was "
                f"trained on {manifest.encoder_model_id!r} embeddings"
            )
        return encoder

    async def _tuned_encoder(self, loaded: LoadedModel) -> Encoder:
        """The language model that training tuned: run from the model's artifact by the
        encoder it was trained with, or by a substitute that serves this very tuning (the
        triton encoder on the model ``temporec export-triton --artifact`` wrote), checked
        by its vector space; no untuned encoder stands in for it."""
        manifest, tuned = loaded.manifest, loaded.manifest.tuned_encoder
        serving = self.serving_encoder(manifest.encoder)
        if serving == manifest.encoder:
            options = {"model": str(loaded.path / tuned["model"]), "max_length": int(tuned["max_length"])}
            return await self.encoders.get(manifest.encoder, options)
        substitute = await self.encoders.get(serving)
        if substitute.model_id != manifest.tuned_encoder_id:
            raise FailedPrecondition(
                f"encoder_substitutes: model {manifest.version!r} tuned its language model in training "
                f"({tuned['tuning']!r}) and embeds texts as {manifest.tuned_encoder_id!r}; encoder {serving!r} "
                f"embeds as {substitute.model_id!r} and cannot stand in for it: serve the model's own encoder "
                f"(temporec export-triton --artifact {loaded.path}) or remove {manifest.encoder!r} from "
                "encoder_substitutes"
            )
        return substitute

    def _forbidden(
        self, query: Query, domain: Domain, history: list[int], serving: ServingModel
    ) -> tuple[Listed, list[str]]:
        """What the query may get, as rows: the candidates (or the domain's ``only``) less
        what the rules forbid, or the whole catalog less the forbidden rows."""
        catalog = serving.loaded.catalog
        unknown = [c for c in query.candidates if c not in catalog.index]
        if unknown:
            raise NotFound(f"candidate_item_ids: not in the catalog of domain {query.domain!r}: {unknown[:5]}")
        forbidden = plugin_call(f"domain {query.domain!r} rules", domain.forbidden, query, history, catalog)
        if not isinstance(forbidden, Forbidden):
            raise PluginError(f"domain {query.domain!r} forbidden returned {type(forbidden).__name__}, not a Forbidden")
        rows = forbidden.only
        if query.candidates:
            listed = np.unique(np.array([catalog.index[c] for c in query.candidates], dtype=np.int64))
            rows = listed if rows is None else np.intersect1d(listed, rows, assume_unique=True)
        if rows is None:
            return Listed(None, torch.from_numpy(forbidden.items)), list(forbidden.rules)
        rows = np.setdiff1d(rows, forbidden.items, assume_unique=True)
        return Listed(torch.from_numpy(rows), None), list(forbidden.rules)

    # -- classify -----------------------------------------------------------------

    async def classify(self, query: Query, texts: list[str]) -> Classified:
        """Each of ``texts`` as a one-event history (the domain's first action) for the
        model ``query`` selects (its domain, head, encoder, model_version): the
        probability of every catalog item, a classifier's answer where the catalog is a
        set of classes (the ``finance`` domain's sentiment labels). Embedded in one call
        by the model's encoder, scored in one forward pass."""
        domain = self._domain(query)
        serving = choose_model(self.models, query, domain, self.registry.heads, self.serving_encoder)
        loaded = serving.loaded
        if not loaded.manifest.use_text:
            raise FailedPrecondition(
                f"domain: the model {loaded.version!r} of {query.domain!r} reads item ids only; classifying texts "
                "needs a text-based model"
            )
        encoder = await self._model_encoder(loaded)
        vectors = await self.encoders.encode(encoder, texts, None)
        probabilities = await serving.classify(vectors)
        return Classified(loaded.catalog.item_ids, probabilities, vectors, loaded.version)

    # -- encode -------------------------------------------------------------------

    async def encode(
        self, texts: list[str], encoder: str = "", timeout: float | None = None, model_version: str = ""
    ) -> tuple[str, torch.Tensor]:
        """``texts`` embedded by ``encoder`` (default: the server's default encoder), or by
        the encoder that embeds for the loaded model ``model_version`` (its tuned one, if it
        tuned its language model): the vectors its catalog's items have."""
        if encoder and model_version:
            raise InvalidArgument("encoder, model_version: set one of them, not both")
        check_texts(texts, self.limits)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout

        async def work() -> tuple[str, torch.Tensor]:
            if model_version:
                loaded = self._loaded_version(model_version)
                name = self.serving_encoder(loaded.manifest.encoder)
                instance = await self._model_encoder(loaded)
            else:
                name = encoder or self.default_encoder
                instance = await self.encoders.get(name)
            remaining = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)
            return name, await self.encoders.encode(instance, texts, remaining)

        return await (work() if timeout is None else asyncio.wait_for(work(), timeout))

    def _loaded_version(self, version: str) -> LoadedModel:
        for serving in self.models.values():
            if serving.loaded.version == version:
                return serving.loaded
        raise NotFound(
            f"model_version: no loaded model has version {version!r}; loaded: "
            f"{allowed(s.loaded.version for s in self.models.values())}"
        )

    # -- discovery ----------------------------------------------------------------

    def components(self) -> Components:
        return list_components(self.registry, list(self.models.values()), self.encoders, self.serving_encoder)


def build_service(config: ServerConfig, registry: Registry | None = None) -> RecommenderService:
    """The service a configuration describes; ``registry`` defaults to the installed plugins."""
    registry = registry if registry is not None else load_registry()
    return RecommenderService(
        registry,
        config.models_dir,
        encoder_options=config.encoders,
        encoder_substitutes=config.encoder_substitutes,
        default_encoder=config.default_encoder,
        limits=config.limits,
        device=config.device,
        store=open_store(registry, config.store, config.store_max_events, config.store_retention_days),
        experiments=config.experiments,
        warm_encoders=config.warm_encoders,
        encoder_cache_size=config.encoder_cache_size,
    )
