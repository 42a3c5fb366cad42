"""The ``memory`` store: users' events in this process's memory, lost when it stops.

For tests and demos (``--store memory:``); every server replica has its own. Shows the
whole store interface in a few lines: a lock, because the server calls a store from
several threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import temporec
from temporec import Store, StoreSettings, TrackedEvent


class MemoryStore(Store):
    name = "memory"

    def __init__(self, url: str, settings: StoreSettings):
        super().__init__(url, settings)
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, tuple[int, TrackedEvent]]] = {}  # user -> event id -> (arrival, event)
        self._arrivals = 0

    def append(self, events: Sequence[TrackedEvent]) -> int:
        added = 0
        with self._lock:
            for event in events:
                mine = self._users.setdefault(event.user_id, {})
                if event.event_id not in mine:
                    self._arrivals += 1
                    mine[event.event_id] = (self._arrivals, event)
                    added += 1
            for user in {event.user_id for event in events}:
                kept = self._ordered(user)[-self.settings.max_events :]
                self._users[user] = {e.event_id: (arrival, e) for arrival, e in kept}
        return added

    def history(self, user_id: str, limit: int) -> list[TrackedEvent]:
        with self._lock:
            return [event for _, event in self._ordered(user_id)[-limit:]]

    def forget(self, user_id: str) -> int:
        with self._lock:
            return len(self._users.pop(user_id, {}))

    def _ordered(self, user_id: str) -> list[tuple[int, TrackedEvent]]:
        found = self._users.get(user_id, {}).values()
        return sorted(found, key=lambda pair: (pair[1].event.timestamp, pair[0]))


@temporec.hookimpl
def register_stores(register):
    register(MemoryStore)
