"""Redis adapter: cache-aside JSON values with TTLs, pub/sub invalidation, raw client access."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ConnectionError, RedisError, TimeoutError

from stores.errors import StoreConfigError, StoreUnavailable, redact_url

# TTLs from the data-tier spec: scores 5 minutes, profiles 1 hour, FX rates 24 hours.
TTL_SCORES_S = 300
TTL_PROFILES_S = 3600
TTL_FX_RATES_S = 86_400
INVALIDATION_CHANNEL = "inval:events"


class CacheStore:
    """A redis.asyncio client with bounded timeouts and typed errors."""

    def __init__(self, url: str, *, timeout: float = 5.0, namespace: str = "cache") -> None:
        self._url = url
        self._timeout = timeout
        self.namespace = namespace
        self.client: aioredis.Redis | None = None

    async def connect(self) -> CacheStore:
        try:
            self.client = aioredis.from_url(self._url, socket_timeout=self._timeout,
                                            socket_connect_timeout=self._timeout, decode_responses=True,
                                            health_check_interval=30)
        except ValueError as exc:
            raise StoreConfigError(f"malformed Redis URL {redact_url(self._url)}", store="redis") from exc
        await self.ping()
        return self

    @property
    def redis(self) -> aioredis.Redis:
        if self.client is None:
            raise StoreUnavailable("Redis adapter is not connected", store="redis")
        return self.client

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except AuthenticationError as exc:
            raise StoreConfigError("Redis refused the credentials", store="redis") from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {redact_url(self._url)} is unreachable ({type(exc).__name__})",
                                   store="redis") from exc

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    async def get_json(self, key: str) -> Any | None:
        try:
            raw = await self.redis.get(key)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis read failed ({type(exc).__name__})", store="redis") from exc
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl_s: int) -> None:
        try:
            await self.redis.set(key, json.dumps(value, default=str, separators=(",", ":")), ex=ttl_s)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis write failed ({type(exc).__name__})", store="redis") from exc

    async def invalidate(self, *keys: str) -> int:
        """Delete keys and announce it so other processes drop their copies."""
        if not keys:
            return 0
        removed = await self.redis.delete(*keys)
        await self.redis.publish(INVALIDATION_CHANNEL, json.dumps(list(keys)))
        return int(removed)

    async def health(self) -> dict[str, object]:
        info = await self.redis.info("persistence")
        return {"ok": await self.ping(), "aof_enabled": bool(info.get("aof_enabled"))}

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
