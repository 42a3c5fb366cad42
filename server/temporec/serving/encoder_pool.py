"""The server's encoders: each created on first use or warmed at start (loading one can
take seconds), its vectors checked, its health polled, and all closed at shutdown.

Each instance has a bounded cache of the vectors of texts it embedded lately
(``TextVectors``), so a repeated out-of-catalog text is not encoded again. The cache
belongs to the instance, not to a vector space: a model's tuned encoder and the base
encoder never read each other's vectors. Lookups are counted in the process-wide
``temporec_encoder_cache_lookups_total{encoder,result}`` (result: hit, miss).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
from typing import Any

import torch
from prometheus_client import Counter

from temporec.contract.encoders import Encoder
from temporec.contract.errors import (
    NotFound,
    PluginError,
    TemporecError,
    allowed,
    plugin_call,
)
from temporec.serving.metrics import PROCESS_REGISTRY

log = logging.getLogger(__name__)

WARM_UP_TEXT = "warm-up"
CACHE_LOOKUPS = Counter(
    "temporec_encoder_cache_lookups",
    "Texts looked up in an encoder's cache of recent vectors, by encoder and result (hit, miss).",
    ["encoder", "result"],
    registry=PROCESS_REGISTRY,
)


class TextVectors:
    """The vectors of at most ``size`` texts, the least recently used dropped first."""

    def __init__(self, size: int):
        self.size = size
        self._vectors: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, text: str) -> torch.Tensor | None:
        vector = self._vectors.get(text)
        if vector is not None:
            self._vectors.move_to_end(text)
        return vector

    def put(self, text: str, vector: torch.Tensor) -> None:
        self._vectors[text] = vector.clone()  # a row of its own: no batch kept alive
        self._vectors.move_to_end(text)
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)


class EncoderPool:
    """``classes``: the registered encoders by name; ``options``: each one's keyword
    options (its ``[encoders.<name>]`` configuration table); ``cache_size``: texts whose
    vectors each instance keeps (0: none)."""

    def __init__(self, classes: dict[str, type[Encoder]], options: dict[str, dict[str, Any]], cache_size: int = 0):
        self.classes = classes
        self.options = options
        self.cache_size = cache_size
        self.started: dict[str, Encoder] = {}
        self._starting: dict[str, asyncio.Task] = {}
        # id(instance) -> its cache; instances stay in ``started`` until close, so ids hold.
        self.caches: dict[int, TextVectors] = {}

    async def get(self, name: str, options: dict[str, Any] | None = None) -> Encoder:
        """The encoder ``name``, created on first use; with ``options``, an instance of its
        own with those options over the configured ones (a model's tuned encoder: the
        ``local`` encoder on the model's directory), started once like the others.

        Creating it is one task per instance, shared by the calls that need it: a call that
        gives up (its deadline) leaves the task running for the next, so a slow load is
        neither repeated nor lost. A failed start is forgotten, and the next call retries."""
        if name not in self.classes:
            raise NotFound(f"encoder: unknown encoder {name!r}; installed: {allowed(self.classes)}")
        key = name if options is None else f"{name} {json.dumps(options, sort_keys=True)}"
        if key in self.started:
            return self.started[key]
        task = self._starting.get(key)
        if task is None:
            merged = {**self.options.get(name, {}), **(options or {})}
            task = asyncio.create_task(self._start(key, name, merged), context=contextvars.Context())
            self._starting[key] = task
        return await asyncio.shield(task)

    async def _start(self, key: str, name: str, options: dict[str, Any]) -> Encoder:
        cls = self.classes[name]
        try:
            encoder = await asyncio.to_thread(plugin_call, f"encoder {name!r} start", lambda: cls(**options))
            if self.cache_size:
                self.caches[id(encoder)] = TextVectors(self.cache_size)
            self.started[key] = encoder
            return encoder
        finally:
            del self._starting[key]

    async def encode(self, encoder: Encoder, texts: list[str], timeout: float | None = None) -> torch.Tensor:
        """``encoder``'s vectors for ``texts``: those in its cache from there, the others
        encoded (each distinct text once) and checked, then cached."""
        cache = self.caches.get(id(encoder))
        if cache is None or not texts:
            return await self.encode_checked(encoder, texts, timeout)
        found = {text: cache.get(text) for text in dict.fromkeys(texts)}
        missing = [text for text, vector in found.items() if vector is None]
        CACHE_LOOKUPS.labels(encoder.name, "hit").inc(len(found) - len(missing))
        CACHE_LOOKUPS.labels(encoder.name, "miss").inc(len(missing))
        if missing:
            for text, vector in zip(missing, await self.encode_checked(encoder, missing, timeout)):
                found[text] = vector
                cache.put(text, vector)
        return torch.stack([found[text] for text in texts])

    async def warm(self, encoder: Encoder, timeout: float) -> None:
        """Run one text through ``encoder`` (its first forward pass is the slow one), past
        its cache."""
        await self.encode_checked(encoder, [WARM_UP_TEXT], timeout)

    @staticmethod
    async def encode_checked(encoder: Encoder, texts: list[str], timeout: float | None = None) -> torch.Tensor:
        """``encoder``'s vectors for ``texts``, checked: one finite row of ``dim`` per text."""
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

    async def health(self, timeout: float = 2.0) -> dict[str, bool]:
        """Whether each started encoder can serve now (``Encoder.healthy``), by name (a
        model's own instances are left out: they run in process); an encoder that raises
        or takes longer than ``timeout`` seconds counts as unhealthy."""

        async def check(encoder: Encoder) -> bool:
            try:
                return bool(await asyncio.wait_for(encoder.healthy(), timeout))
            except Exception:
                return False

        started = {name: encoder for name, encoder in self.started.items() if name in self.classes}
        results = await asyncio.gather(*(check(encoder) for encoder in started.values()))
        return dict(zip(started, results))

    def close(self) -> None:
        for encoder in self.started.values():
            plugin_call(f"encoder {encoder.name!r} close", encoder.close)
