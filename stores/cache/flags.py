"""Feature-flag definitions in Redis: one hash `ff:flags`, field = flag key, value = the definition as JSON.

One key (one slot) holds every flag, so a reader gets a consistent set in one HGETALL. The agent Redis user may
only read it; `kredete flags set` writes as the service user and announces the change on `inval:events`.
"""

from __future__ import annotations

import json

from stores.cache.client import CacheStore, redis_errors
from stores.cache.pubsub import publish_invalidation

FLAGS_KEY = "ff:flags"


class FlagStore:
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    async def all(self) -> dict[str, dict]:
        """Every stored definition by key; one that does not parse is left out (the evaluator logs it)."""
        with redis_errors("Redis read flags"):
            raw = await self.store.redis.hgetall(FLAGS_KEY)
        out: dict[str, dict] = {}
        for key, body in raw.items():
            try:
                value = json.loads(body)
            except ValueError:
                continue
            if isinstance(value, dict):
                out[key] = value
        return out

    async def put(self, key: str, definition: dict) -> None:
        with redis_errors("Redis write flag"):
            await self.store.redis.hset(FLAGS_KEY, key, json.dumps(definition, separators=(",", ":"), default=str))
        await publish_invalidation(self.store, [FLAGS_KEY], f"flag:{key}")

    async def delete(self, key: str) -> bool:
        with redis_errors("Redis delete flag"):
            done = bool(await self.store.redis.hdel(FLAGS_KEY, key))
        await publish_invalidation(self.store, [FLAGS_KEY], f"flag:{key}")
        return done
