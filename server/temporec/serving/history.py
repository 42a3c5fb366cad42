"""Users' tracked events: the store a server's ``store`` URL opens, called off the event
loop, and the stored events a model can read (docs/realtime.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

from temporec.contract.errors import FailedPrecondition, InvalidArgument, allowed, plugin_call
from temporec.contract.registry import Registry
from temporec.contract.stores import Store, StoreSettings, TrackedEvent, redact, scheme
from temporec.contract.types import Event, Limits
from temporec.model.artifacts import LoadedModel
from temporec.serving.experiments import DAY_SECONDS
from temporec.serving.records import TrackResult
from temporec.serving.validation import check_id, check_tracked

HOW_TO_CONFIGURE = (
    "this server keeps no events; set its `store` setting (--store sqlite:///path/history.db, "
    "or redis://host:6379/0 to share them between replicas)"
)


def open_store(registry: Registry, url: str, max_events: int, retention_days: float) -> Store | None:
    """The store plugin that ``url``'s scheme names, opened on ``url``; None for no URL."""
    if not url:
        return None
    name = scheme(url)
    if name not in registry.stores:
        raise FailedPrecondition(
            f"store: no installed store handles {name!r} URLs ({redact(url)}); installed: {allowed(registry.stores)}"
        )
    settings = StoreSettings(max_events=max_events, retention_seconds=retention_days * DAY_SECONDS)
    return plugin_call(f"store {name!r}", registry.stores[name], url, settings)


class History:
    """The service's side of a store: checks, then the store's blocking calls in a thread."""

    def __init__(self, store: Store | None, limits: Limits):
        self.store, self.limits = store, limits

    def need(self, what: str) -> Store:
        if self.store is None:
            raise FailedPrecondition(f"{what}: {HOW_TO_CONFIGURE}")
        return self.store

    async def call(self, what: str, method: str, *args):
        store = self.need(what)
        return await asyncio.to_thread(plugin_call, f"store {store.name!r} {method}", getattr(store, method), *args)

    async def track(self, events: Sequence[TrackedEvent]) -> TrackResult:
        self.need("Track")
        check_tracked(list(events), self.limits)
        now = time.time()
        stamped = [e if e.event.timestamp else replace(e, event=replace(e.event, timestamp=now)) for e in events]
        cutoff = now - self.store.settings.retention_seconds if self.store.settings.retention_seconds else 0.0
        kept = [e for e in stamped if e.event.timestamp >= cutoff]
        unique: dict[tuple[str, str], TrackedEvent] = {}
        for e in kept:  # a repeat within the call counts as a duplicate; the first one, in order, is kept
            unique.setdefault((e.user_id, e.event_id), e)
        stored = await self.call("Track", "append", list(unique.values())) if unique else 0
        return TrackResult(stored, len(kept) - stored, len(events) - len(kept))

    async def events(self, user_id: str, limit: int) -> list[TrackedEvent]:
        check_id("user_id", user_id, self.limits)
        if limit < 0:
            raise InvalidArgument(f"limit: must not be negative (0: all), got {limit}")
        self.need("GetHistory")
        return await self.call("GetHistory", "history", user_id, limit or self.store.settings.max_events)

    async def forget(self, user_id: str) -> int:
        check_id("user_id", user_id, self.limits)
        return await self.call("ForgetUser", "forget", user_id)

    async def healthy(self) -> bool:
        """Whether the store answers now; a store whose check raises is not healthy."""
        try:
            return bool(await asyncio.to_thread(self.need("health").healthy))
        except Exception:  # the check's failure is the answer
            return False

    async def close(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(plugin_call, f"store {self.store.name!r} close", self.store.close)


def readable(events: Sequence[TrackedEvent], loaded: LoadedModel) -> list[Event]:
    """The stored events ``loaded`` can read: its actions, and items its catalog has or
    texts it embeds. Others (another domain's, say) are left out, not refused: a store
    serves every domain, and one odd event must not fail every request of its user."""
    manifest, catalog = loaded.manifest, loaded.catalog
    return [
        t.event
        for t in events
        if (not t.event.action or t.event.action in manifest.actions)
        and (t.event.item_id in catalog.index or (t.event.text and manifest.use_text))
    ]
