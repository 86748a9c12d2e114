"""Cache-aside over Redis with an in-process tier: what every cached read of the services goes through.

* **Versioned entries.** A value is stored as `{"f": FORMAT, "k": kind, "v": kind version, "d": data}`. An
  entry of another format or kind version (written by an older or newer deploy), or one that does not parse or
  validate, is dropped and refilled from the source, and counted.
* **Jittered TTLs**: each write spreads its TTL by ±`jitter`, so entries filled together do not expire together.
* **Stampede protection**: one load per key and process (single flight), and across processes a short Redis
  lock: the others wait for the filler's value instead of all reading the source.
* **Negative caching**: a source miss is stored as a marker (`negative_ttl_s`), answered as None.
* **No stale refill.** Every key has a generation (`<key>:gen`, same hash tag, so one slot). The invalidator
  bumps it before deleting the value; a filler stores its value only if the generation it saw before reading the
  source is still current (one script). So a read that raced a write cannot put the old value back.
* **Local tier.** Each process keeps copies for `local_ttl_s` and drops them when an invalidation message names
  them (see `stores.cache.pubsub`), or all of them when its subscription was broken.
* **Redis down**: reads go to the source, counted in `kredete_cache_bypassed` and logged (at most every 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from stores.cache.client import CacheStore
from stores.cache.metrics import CACHE_BYPASS, CACHE_DROPPED, CACHE_READS
from stores.cache.pubsub import InvalidationSubscriber
from stores.errors import StoreError, StoreUnavailable

log = logging.getLogger("kredete.cache")

M = TypeVar("M", bound=BaseModel)
#: Envelope format; bump when the envelope itself changes.
FORMAT = 1
#: A generation key outlives any value it guards (the longest TTL is 24 h).
GEN_TTL_MS = 26 * 3600 * 1000

# KEYS[1] value, KEYS[2] generation; ARGV[1] generation seen before the source read ("" = none), ARGV[2] value,
# ARGV[3] TTL ms. Stores only when no invalidation happened in between.
_FILL = """
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
"""
# KEYS[1] value, KEYS[2] generation: bump, then drop the value. Returns the new generation.
_INVALIDATE = """
local gen = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]))
redis.call('DEL', KEYS[1])
return gen
"""
# KEYS[1] lock; ARGV[1] owner token: release only our own lock.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class EntryKind(Generic[M]):
    """One kind of cached value: its model, TTL and version (bump `version` when the model changes shape)."""

    name: str
    model: type[M]
    ttl_s: int
    version: int = 1


class _Corrupt(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


_NEGATIVE = object()


class LocalTier:
    """Bounded in-process copies with their own expiry; `drop` and `clear` bump generations so a read in flight
    does not put back what an invalidation removed."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._gens: dict[str, int] = {}
        self.epoch = 0

    def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        return item[1]

    def stamp(self, key: str) -> tuple[int, int]:
        return self.epoch, self._gens.get(key, 0)

    def put(self, key: str, value: Any, stamp: tuple[int, int], ttl_s: float | None = None) -> None:
        if self.ttl_s <= 0 or stamp != self.stamp(key):
            return
        self._items[key] = (time.monotonic() + min(self.ttl_s, ttl_s or self.ttl_s), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)
        self._gens[key] = self._gens.get(key, 0) + 1
        if len(self._gens) > 4 * self.max_entries:  # generations of long-gone keys: a new epoch replaces them
            self.clear()

    def clear(self) -> None:
        self._items.clear()
        self._gens.clear()
        self.epoch += 1

    def __len__(self) -> int:
        return len(self._items)


class ReadThroughCache:
    """Cache-aside reads (`get`) and invalidation (`invalidate`) over one `CacheStore` (None: no Redis)."""

    def __init__(self, store: CacheStore | None, *, jitter: float = 0.1, negative_ttl_s: int = 60,
                 local_ttl_s: float = 30.0, lock_ttl_ms: int = 3000, wait_step_s: float = 0.01) -> None:
        self.store = store
        self.jitter = jitter
        self.negative_ttl_s = negative_ttl_s
        self.local = LocalTier(local_ttl_s)
        self.lock_ttl_ms = lock_ttl_ms
        self.wait_step_s = wait_step_s
        self._flights: dict[str, asyncio.Future] = {}
        self._fill = store.script(_FILL) if store else None
        self._invalidate = store.script(_INVALIDATE) if store else None
        self._unlock = store.script(_UNLOCK) if store else None
        self._last_bypass_log = 0.0
        self.subscriber: InvalidationSubscriber | None = None

    async def follow_invalidations(self) -> InvalidationSubscriber | None:
        """Subscribe to invalidation messages; the local tier serves copies only while subscribed."""
        if self.store is None or self.local.ttl_s <= 0:
            return None
        self.subscriber = InvalidationSubscriber(self.store, on_keys=lambda keys: self.drop_local(*keys),
                                                 on_reset=self.clear_local)
        return await self.subscriber.start()

    async def close(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.stop()
            self.subscriber = None

    @property
    def local_on(self) -> bool:
        return self.subscriber is not None and self.subscriber.connected.is_set()

    # --- public API ---------------------------------------------------------------------------------------
    async def get(self, kind: EntryKind[M], key: str, load: Callable[[], Awaitable[M | None]]) -> M | None:
        """The cached value of `key`, or `load()`'s (stored for next time); None when the source has none."""
        stamp = self.local.stamp(key)
        held = self.local.get(key) if self.local_on else None
        if held is not None:
            CACHE_READS.labels(kind=kind.name, outcome="local_hit").inc()
            return None if held is _NEGATIVE else held
        flight = self._flights.get(key)
        if flight is not None:
            value = await asyncio.shield(flight)
            return None if value is _NEGATIVE else value
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            value = await self._read(kind, key, load)
            fut.set_result(value)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, nobody else logs it
            raise
        finally:
            self._flights.pop(key, None)
        if self.local_on:
            self.local.put(key, value, stamp, kind.ttl_s)
        return None if value is _NEGATIVE else value

    async def invalidate(self, *keys: str) -> None:
        """Bump each key's generation and delete its value in Redis, and drop this process's copies.
        (Other processes drop theirs when the publisher's message reaches them.)"""
        for key in keys:
            self.local.drop(key)
            if self._invalidate is not None:
                await self._invalidate(keys=[key, f"{key}:gen"], args=[GEN_TTL_MS])

    def drop_local(self, *keys: str) -> None:
        for key in keys:
            self.local.drop(key)

    def clear_local(self) -> None:
        self.local.clear()

    def ttl_ms(self, ttl_s: float) -> int:
        """A TTL spread by ±jitter (uniform)."""
        return max(1, int(ttl_s * 1000 * (1 + random.uniform(-self.jitter, self.jitter))))

    # --- internals ----------------------------------------------------------------------------------------
    async def _read(self, kind: EntryKind[M], key: str, load: Callable[[], Awaitable[M | None]]) -> Any:
        if self.store is None:
            return _value_or_negative(await load())
        try:
            return await self._read_redis(kind, key, load)
        except StoreUnavailable as exc:
            CACHE_BYPASS.labels(kind=kind.name).inc()
            CACHE_READS.labels(kind=kind.name, outcome="bypass").inc()
            now = time.monotonic()
            if now - self._last_bypass_log > 10:
                self._last_bypass_log = now
                log.warning("cache bypassed, reading %s from the source: %s", kind.name, exc)
            return _value_or_negative(await load())

    async def _read_redis(self, kind: EntryKind[M], key: str, load: Callable[[], Awaitable[M | None]]) -> Any:
        store = self.store
        assert store is not None
        cached = await self._cached(kind, key)
        if cached is not None:
            return cached
        gen = await store.get(f"{key}:gen") or ""
        token = uuid.uuid4().hex
        lock = f"{key}:lock"
        if not await store.set(lock, token, ttl_s=self.lock_ttl_ms / 1000, nx=True):
            # Someone else is filling: wait for their value rather than read the source too.
            deadline = time.monotonic() + self.lock_ttl_ms / 1000
            while time.monotonic() < deadline:
                await asyncio.sleep(self.wait_step_s)
                cached = await self._cached(kind, key)
                if cached is not None:
                    return cached
            return _value_or_negative(await load())
        try:
            value = _value_or_negative(await load())
            if value is _NEGATIVE:
                body, ttl = self._encode(kind, None), self.ttl_ms(self.negative_ttl_s)
            else:
                body, ttl = self._encode(kind, value), self.ttl_ms(kind.ttl_s)
            CACHE_READS.labels(kind=kind.name, outcome="miss").inc()
            await self._fill(keys=[key, f"{key}:gen"], args=[gen, body, ttl])
            return value
        finally:
            with contextlib.suppress(StoreError):  # otherwise it expires on its own
                await self._unlock(keys=[lock], args=[token])

    async def _cached(self, kind: EntryKind[M], key: str) -> Any | None:
        raw = await self.store.get(key)  # type: ignore[union-attr]
        if raw is None:
            return None
        try:
            value = self._decode(kind, raw)
        except _Corrupt as bad:
            CACHE_DROPPED.labels(kind=kind.name, reason=bad.reason).inc()
            log.info("dropped a %s cache entry (%s); refilling from the source", kind.name, bad.reason)
            await self.store.delete(key)  # type: ignore[union-attr]
            return None
        CACHE_READS.labels(kind=kind.name, outcome="negative_hit" if value is _NEGATIVE else "hit").inc()
        return value

    @staticmethod
    def _encode(kind: EntryKind[M], value: M | None) -> str:
        data = None if value is None else value.model_dump(mode="json")
        return json.dumps({"f": FORMAT, "k": kind.name, "v": kind.version, "d": data}, separators=(",", ":"))

    @staticmethod
    def _decode(kind: EntryKind[M], raw: str) -> Any:
        try:
            env = json.loads(raw)
        except ValueError:
            raise _Corrupt("corrupt") from None
        if not isinstance(env, dict) or "d" not in env:
            raise _Corrupt("corrupt")
        if env.get("f") != FORMAT or env.get("k") != kind.name or env.get("v") != kind.version:
            raise _Corrupt("old_format")
        if env["d"] is None:
            return _NEGATIVE
        try:
            return kind.model.model_validate(env["d"])
        except ValidationError:
            raise _Corrupt("corrupt") from None


def _value_or_negative(value: Any) -> Any:
    return _NEGATIVE if value is None else value
