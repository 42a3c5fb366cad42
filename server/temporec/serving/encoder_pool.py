"""The server's encoders: each created on first use (loading one can take seconds), its
vectors checked, its health polled, and all closed at shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from typing import Any

import torch

from temporec.contract.encoders import Encoder
from temporec.contract.errors import (
    NotFound,
    PluginError,
    TemporecError,
    allowed,
    plugin_call,
)

log = logging.getLogger(__name__)


class EncoderPool:
    """``classes``: the registered encoders by name; ``options``: each one's keyword
    options (its ``[encoders.<name>]`` configuration table)."""

    def __init__(self, classes: dict[str, type[Encoder]], options: dict[str, dict[str, Any]]):
        self.classes = classes
        self.options = options
        self.started: dict[str, Encoder] = {}
        self._starting: dict[str, asyncio.Task] = {}

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
            self.started[key] = await asyncio.to_thread(plugin_call, f"encoder {name!r} start", lambda: cls(**options))
            return self.started[key]
        finally:
            del self._starting[key]

    @staticmethod
    async def encode(encoder: Encoder, texts: list[str], timeout: float | None = None) -> torch.Tensor:
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
