"""Cache-aside against the real Redis: TTL jitter, stampede protection, negative caching, versioned entries,
no stale refill after an invalidation, Redis down → bypass, and a subscriber that reconnects."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from pydantic import BaseModel

from stores.cache import CacheStore
from stores.cache.aside import EntryKind, ReadThroughCache
from stores.cache.metrics import CACHE_BYPASS, CACHE_DROPPED


class Thing(BaseModel):
    name: str
    n: int


KIND = EntryKind("thing", Thing, ttl_s=300, version=2)


def _key() -> str:
    return f"cache:{{{uuid.uuid4()}}}:thing"


class Source:
    """A counting, optionally slow source."""

    def __init__(self, value: Thing | None, delay: float = 0.0) -> None:
        self.value, self.delay, self.calls = value, delay, 0

    async def __call__(self) -> Thing | None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.value


async def test_ttls_are_jittered_within_bounds(cache):
    rtc = ReadThroughCache(cache, jitter=0.1)
    ttls = []
    for _ in range(20):
        key = _key()
        await rtc.get(KIND, key, Source(Thing(name="a", n=1)))
        ttls.append(await cache.redis.pttl(key))
    assert all(270_000 - 1000 <= t <= 330_000 for t in ttls)
    assert len({t // 1000 for t in ttls}) > 5, "TTLs filled together must not expire together"


async def test_concurrent_misses_read_the_source_once(cache):
    key = _key()
    # Two "processes" (separate fronts) and 20 concurrent readers each: one source read in all.
    fronts = [ReadThroughCache(cache), ReadThroughCache(cache)]
    src = Source(Thing(name="x", n=7), delay=0.2)
    results = await asyncio.gather(*(f.get(KIND, key, src) for f in fronts for _ in range(20)))
    assert src.calls == 1
    assert {r.n for r in results} == {7}


async def test_misses_are_cached_as_negative(cache):
    key = _key()
    rtc = ReadThroughCache(cache, negative_ttl_s=60)
    src = Source(None)
    assert await rtc.get(KIND, key, src) is None
    assert await rtc.get(KIND, key, src) is None
    assert src.calls == 1
    assert 0 < await cache.redis.pttl(key) <= 66_000


@pytest.mark.parametrize("stored", ["{not json", json.dumps({"f": 1, "k": "thing", "v": 2, "d": {"name": 5}}),
                                    json.dumps({"f": 1, "k": "thing", "v": 1, "d": {"name": "old", "n": 1}})])
async def test_corrupt_or_old_format_entries_are_dropped_and_refilled(cache, stored):
    key = _key()
    await cache.set(key, stored, ttl_s=60)
    reason = "old_format" if '"v": 1' in stored else "corrupt"
    before = CACHE_DROPPED.labels(kind="thing", reason=reason)._value.get()
    src = Source(Thing(name="fresh", n=2))
    got = await ReadThroughCache(cache).get(KIND, key, src)
    assert got == Thing(name="fresh", n=2) and src.calls == 1
    assert json.loads(await cache.get(key))["v"] == 2
    assert CACHE_DROPPED.labels(kind="thing", reason=reason)._value.get() == before + 1


async def test_a_read_racing_an_invalidation_cannot_put_the_old_value_back(cache):
    key = _key()
    reader, writer = ReadThroughCache(cache), ReadThroughCache(cache)
    slow_old = Source(Thing(name="old", n=1), delay=0.3)
    read = asyncio.create_task(reader.get(KIND, key, slow_old))
    await asyncio.sleep(0.1)  # the reader has read the old value from the source and is about to fill
    await writer.invalidate(key)  # the write's event is processed meanwhile
    assert (await read).name == "old"  # that reader got what the source said when it asked
    assert await cache.get(key) is None, "the old value must not be cached after the invalidation"
    assert (await reader.get(KIND, key, Source(Thing(name="new", n=2)))).name == "new"


async def test_redis_down_bypasses_the_cache_with_a_metric(caplog):
    dead = CacheStore("redis://kredete:x@127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(Exception):  # noqa: B017 - the first connect reports the outage
        await dead.connect()
    rtc = ReadThroughCache(dead)
    before = CACHE_BYPASS.labels(kind="thing")._value.get()
    src = Source(Thing(name="direct", n=3))
    with caplog.at_level("WARNING", logger="kredete.cache"):
        assert (await rtc.get(KIND, _key(), src)).name == "direct"
        assert (await rtc.get(KIND, _key(), src)).name == "direct"
    assert src.calls == 2
    assert CACHE_BYPASS.labels(kind="thing")._value.get() == before + 2
    assert any("cache bypassed" in r.getMessage() for r in caplog.records)
    assert not any("127.0.0.1:1" in r.getMessage() for r in caplog.records), "no address in the log line"
    await dead.close()


async def test_local_copies_are_served_only_while_subscribed(cache, reader):
    key = _key()
    src = Source(Thing(name="v", n=1))
    await reader.get(KIND, key, src)
    await reader.get(KIND, key, src)
    assert len(reader.local) == 1 and src.calls == 1
    # Break the subscription: everything held locally is dropped until it is back.
    sub = reader.subscriber
    await sub._client.connection_pool.disconnect()  # type: ignore[union-attr]
    for _ in range(200):
        if sub.reconnects:
            break
        await asyncio.sleep(0.01)
    assert sub.reconnects >= 1 and sub.connected.is_set()
    assert len(reader.local) == 0
