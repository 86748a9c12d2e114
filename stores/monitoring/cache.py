"""Redis statistics: memory, keys per database, keyspace hits and misses (INFO)."""

from __future__ import annotations

from pydantic import BaseModel
from redis.exceptions import RedisError

from stores.cache.client import CacheStore
from stores.errors import StoreUnavailable


class RedisUsage(BaseModel):
    used_memory_bytes: int
    maxmemory_bytes: int
    keys: int
    hits: int
    misses: int


class CacheStats:
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    async def usage(self) -> RedisUsage:
        try:
            mem = await self.store.redis.info("memory")
            stats = await self.store.redis.info("stats")
            keyspace = await self.store.redis.info("keyspace")
        except RedisError as exc:
            raise StoreUnavailable(f"Redis INFO failed ({type(exc).__name__})", store="redis") from exc
        keys = sum(int(v.get("keys", 0)) for v in keyspace.values() if isinstance(v, dict))
        return RedisUsage(used_memory_bytes=int(mem.get("used_memory", 0)),
                          maxmemory_bytes=int(mem.get("maxmemory", 0)), keys=keys,
                          hits=int(stats.get("keyspace_hits", 0)), misses=int(stats.get("keyspace_misses", 0)))
