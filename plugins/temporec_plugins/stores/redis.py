"""The ``redis`` store: users' events in Redis, shared by every server replica that names it.

``store = "redis://127.0.0.1:6379/0"`` (``rediss://`` for TLS; a password in the URL is
never shown). Needs the ``redis`` package (``pip install 'temporec[redis]'``).

Per user, three keys (``temporec:{USER}:events | data | seq``): a sorted set of event ids
scored by timestamp (ms), a hash of event id to the event, and an arrival counter that
orders events of equal timestamp. ``ZADD NX`` on the event id makes a retried event a
no-op. A whole ``append`` (every user of the batch: their events, caps and expiry) runs as
one Lua script, atomically, so replicas never interleave inside a batch, and one script
per batch is what makes ingestion fast. That needs one Redis server (replicas and
Sentinel are fine), not Redis Cluster, whose scripts may touch one shard only.

Experiments' exposures: per experiment, a sorted set scored by time
(``temporec:exp:{NAME}:exposures``, members "SEQ JSON", SEQ from ``temporec:exp:{NAME}:seq``),
and per user a set naming each of the user's members (``temporec:{USER}:exposures``), so
that ``forget`` removes them too.

Durability is Redis's: an event is acknowledged once Redis has it in memory. Only with
``appendonly yes`` and ``appendfsync always`` does every acknowledged event survive a
crash of Redis or of its machine; the default ``everysec`` may lose the last second, and
without the append-only file a restart loses what came after the last snapshot. The store
logs a warning at start when Redis says it runs otherwise.

Calls fail fast when Redis is down (1 s to connect, 2 s to answer, no retry): the caller
gets UNAVAILABLE naming the store, and the next call reconnects.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import temporec
from temporec import Event, Exposure, FailedPrecondition, Store, StoreSettings, TrackedEvent, Unavailable

try:  # an extra: without it the store is still listed, and says what to install when chosen
    import redis as redis_py
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover (the dev extra has it)
    redis_py = None

log = logging.getLogger(__name__)

PREFIX = "temporec"
CONNECT_SECONDS, ANSWER_SECONDS = 1.0, 2.0

# KEYS: per user, its events (zset), data (hash) and seq (counter). ARGV: cap, cutoff ms
# (0: none), and the batch as one JSON text (a single argument costs the client far less to
# send than three per event): per user, in KEYS' order, its [event id, timestamp ms, payload]
# triples. Returns how many events were new.
APPEND = """
local function drop(events, data, ids)
  for j = 1, #ids, 1000 do
    local chunk = {}
    for k = j, math.min(j + 999, #ids) do chunk[#chunk + 1] = ids[k] end
    redis.call('ZREM', events, unpack(chunk))
    redis.call('HDEL', data, unpack(chunk))
  end
end
local cap, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
local added = 0
for u, mine in ipairs(cjson.decode(ARGV[3])) do
  local events, data, seq = KEYS[3 * u - 2], KEYS[3 * u - 1], KEYS[3 * u]
  for _, e in ipairs(mine) do
    if redis.call('ZADD', events, 'NX', e[2], e[1]) == 1 then
      redis.call('HSET', data, e[1], redis.call('INCR', seq) .. ' ' .. e[3])
      added = added + 1
    end
  end
  local extra = redis.call('ZCARD', events) - cap
  if extra > 0 then drop(events, data, redis.call('ZRANGE', events, 0, extra - 1)) end
  if cutoff > 0 then drop(events, data, redis.call('ZRANGEBYSCORE', events, '-inf', '(' .. cutoff)) end
end
return added
"""
# KEYS: events, data. ARGV: cutoff ms, limit. The newest ids and their payloads, newest first.
RECENT = """
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {} end
local payloads = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i = 1, #ids do out[#out + 1] = ids[i]; out[#out + 1] = payloads[i] or '' end
return out
"""
# KEYS: the experiment's exposures (zset) and seq, the user's exposures (set). ARGV: ms, JSON.
EXPOSE = """
local member = redis.call('INCR', KEYS[2]) .. ' ' .. ARGV[2]
redis.call('ZADD', KEYS[1], ARGV[1], member)
redis.call('SADD', KEYS[3], KEYS[1] .. '\\n' .. member)
"""
# KEYS: the user's exposures (set): each names an experiment's zset and a member of it.
FORGET_EXPOSURES = """
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local cut = string.find(entry, '\\n', 1, true)
  redis.call('ZREM', string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1))
end
redis.call('DEL', KEYS[1])
"""


def experiment_keys(experiment: str) -> tuple[str, str]:
    tag = f"{PREFIX}:exp:{{{experiment}}}"
    return f"{tag}:exposures", f"{tag}:seq"


def exposures_key(user_id: str) -> str:
    return f"{PREFIX}:{{{user_id}}}:exposures"


def keys(user_id: str) -> tuple[str, str, str]:
    tag = f"{PREFIX}:{{{user_id}}}"
    return f"{tag}:events", f"{tag}:data", f"{tag}:seq"


class RedisStore(Store):
    name = "redis"

    def __init__(self, url: str, settings: StoreSettings):
        super().__init__(url, settings)
        if redis_py is None:
            raise FailedPrecondition("store 'redis' needs the redis package: pip install 'temporec[redis]'")
        self._redis = redis_py.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_SECONDS,
            socket_timeout=ANSWER_SECONDS,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._append = self._redis.register_script(APPEND)
        self._recent = self._redis.register_script(RECENT)
        self._expose = self._redis.register_script(EXPOSE)
        self._forget_exposures = self._redis.register_script(FORGET_EXPOSURES)
        self._warn_unless_durable()

    def append(self, events: Sequence[TrackedEvent]) -> int:
        by_user: dict[str, list] = {}
        for e in events:
            by_user.setdefault(e.user_id, []).append([e.event_id, str(to_ms(e.event.timestamp)), payload(e.event)])
        names = [name for user in by_user for name in keys(user)]
        batch = json.dumps(list(by_user.values()), ensure_ascii=False, separators=(",", ":"))
        with self._guard():
            return self._append(keys=names, args=[self.settings.max_events, self._cutoff_ms(), batch])

    def history(self, user_id: str, limit: int) -> list[TrackedEvent]:
        with self._guard():
            flat = self._recent(keys=keys(user_id)[:2], args=[self._cutoff_ms() or "-inf", limit])
        found = []
        for event_id, stored in zip(flat[::2], flat[1::2]):
            if stored:  # one script read both, but a key edited by hand may lack an event
                seq, _, body = stored.partition(" ")
                found.append((int(seq), TrackedEvent(user_id, event_id, event_from(body))))
        found.sort(key=lambda pair: (pair[1].event.timestamp, pair[0]))
        return [tracked for _, tracked in found]

    def record_exposure(self, exposure: Exposure) -> None:
        fields = [exposure.arm, exposure.user_id, exposure.request_id, list(exposure.items)]
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        names = [*experiment_keys(exposure.experiment), exposures_key(exposure.user_id)]
        with self._guard():
            self._expose(keys=names, args=[to_ms(exposure.timestamp), body])

    def exposures(self, experiment: str) -> list[Exposure]:
        with self._guard():
            members = self._redis.zrange(experiment_keys(experiment)[0], 0, -1, withscores=True)
        found = []
        for member, ms in members:
            seq, _, body = member.partition(" ")
            arm, user, request_id, items = json.loads(body)
            found.append((ms, int(seq), Exposure(experiment, arm, user, request_id, tuple(items), ms / 1000)))
        return [exposure for *_, exposure in sorted(found, key=lambda f: f[:2])]

    def forget(self, user_id: str) -> int:
        events, data, seq = keys(user_id)
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            pipe.zcard(events).delete(events, data, seq)
            self._forget_exposures(keys=[exposures_key(user_id)], client=pipe)
            removed, *_ = pipe.execute()
        return removed

    def healthy(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis_py.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()

    def _cutoff_ms(self) -> int:
        retention = self.settings.retention_seconds
        return to_ms(time.time() - retention) if retention else 0

    def _guard(self):
        return Guard(self.describe()["url"])

    def _warn_unless_durable(self) -> None:
        try:
            settings = self._redis.config_get("append*")
        except redis_py.RedisError:  # down for now, or CONFIG disabled (managed Redis): say nothing
            return
        if settings.get("appendonly") != "yes" or settings.get("appendfsync") != "always":
            log.warning(
                "store 'redis' (%s): appendonly=%s, appendfsync=%s: acknowledged events may be lost if Redis "
                "crashes; set appendonly yes and appendfsync always for every event to survive",
                self.describe()["url"],
                settings.get("appendonly"),
                settings.get("appendfsync"),
            )


class Guard:
    """Redis unreachable, or answering too slowly, is the store being unavailable."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, (redis_py.ConnectionError, redis_py.TimeoutError)):
            raise Unavailable(f"store 'redis' ({self.url}): cannot reach Redis: {exc}") from exc
        return False


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def payload(event: Event) -> str:
    fields = [to_ms(event.timestamp), event.item_id, event.action, event.text]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def event_from(body: str) -> Event:
    ms, item_id, action, text = json.loads(body)
    return Event(item_id, action, ms / 1000, text)


@temporec.hookimpl
def register_stores(register):
    register(RedisStore)
