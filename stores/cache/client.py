"""Redis adapter: one client for a standalone server or a Redis Cluster, bounded timeouts, typed errors.

The URL decides the topology: `redis://user:pass@host:port/0` is one server; `...?cluster=true` is a cluster
(any node is a seed: the client reads the slot map and follows MOVED/ASK and failovers). Every Redis or
socket error leaves this package as `StoreUnavailable` (never the driver's text, which names the address).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from stores import metrics
from stores.breaker import Breaker
from stores.errors import StoreConfigError, StoreError, StoreUnavailable, redact_url

# TTLs from the data-tier spec: scores 5 minutes, profiles 1 hour, FX rates 24 hours.
TTL_SCORES_S = 300
TTL_PROFILES_S = 3600
TTL_FX_RATES_S = 86_400
INVALIDATION_CHANNEL = "inval:events"


class CachePermissionError(StoreError):
    """The Redis user may not run this command or touch this key (ACL)."""


def split_cluster_flag(url: str) -> tuple[str, bool]:
    """The URL without the `cluster` query parameter, and whether it asked for a cluster."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flag = [v for k, v in query if k == "cluster"]
    rest = [(k, v) for k, v in query if k != "cluster"]
    cluster = bool(flag) and flag[-1].lower() in ("1", "true", "yes")
    return urlunsplit(parts._replace(query=urlencode(rest))), cluster


def hash_tag(value: str) -> str:
    """`{value}`: keys sharing a hash tag share a cluster slot, so one script may touch them all."""
    return "{" + value.replace("{", "").replace("}", "") + "}"


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Translate driver errors into typed store errors with safe messages."""
    try:
        yield
    except StoreError:
        raise
    except AuthenticationError as exc:
        raise StoreConfigError("Redis refused the credentials", store="redis") from exc
    except NoPermissionError as exc:
        raise CachePermissionError(f"{what}: not permitted for this Redis user", store="redis") from exc
    except ResponseError as exc:
        # CLUSTERDOWN, TRYAGAIN, LOADING, READONLY...: the command may succeed again once the server recovers.
        raise StoreUnavailable(f"{what}: Redis refused ({str(exc).split(' ', 1)[0][:40]})", store="redis") from exc
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"{what}: Redis unreachable ({type(exc).__name__})", store="redis") from exc


class CacheStore:
    """A redis.asyncio client (standalone or cluster) with bounded timeouts and typed errors.

    The client object is kept even when the first connection fails, so a server that comes back later is used
    without restarting the process. `breaker` (named `name`) refuses calls at once after consecutive
    failures to reach Redis, until a PING answers; callers then degrade as they do for any Redis error.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, namespace: str = "cache", name: str = "redis") -> None:
        self._url, self.cluster = split_cluster_flag(url)
        self._timeout = timeout
        self.namespace = namespace
        self.client: aioredis.Redis | RedisCluster | None = None
        self.breaker = Breaker(name, probe=self._probe)

    async def connect(self) -> CacheStore:
        try:
            if self.cluster:
                # Few, short retries: while a master fails over, callers get an error within ~0.2 s and degrade
                # (the rate limiter) or read the source (the cache) instead of waiting out the election.
                self.client = RedisCluster.from_url(
                    self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                    decode_responses=True, require_full_coverage=False,
                    retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=2))
            else:
                self.client = aioredis.from_url(self._url, socket_timeout=self._timeout,
                                                socket_connect_timeout=self._timeout, decode_responses=True,
                                                health_check_interval=30)
        except ValueError as exc:
            raise StoreConfigError(f"malformed Redis URL {redact_url(self._url)}", store="redis") from exc
        metrics.track_redis(self)  # pool gauges on /metrics
        await self.ping()
        return self

    @property
    def redis(self) -> aioredis.Redis | RedisCluster:
        """The client, for one call; refused at once (StoreUnavailable) while the breaker is open."""
        if self.client is None:
            raise StoreUnavailable("Redis adapter is not connected", store="redis")
        self.breaker.check()
        return self.client

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        """One Redis call: refused at once while the breaker is open, its errors typed (`redis_errors`) and
        its outcome recorded (an unreachable Redis counts; an ACL refusal is an answer)."""
        with self.breaker.guard(lambda exc: isinstance(exc, StoreUnavailable)), redis_errors(what):
            yield

    async def _probe(self) -> None:
        """The breaker's probe: PING (a cluster client re-reads the slot map first)."""
        if self.client is None:
            raise StoreUnavailable("Redis adapter is not connected", store="redis")
        with redis_errors("Redis probe"):
            if self.cluster and isinstance(self.client, RedisCluster):
                await self.client.initialize()
            await self.client.ping()

    @property
    def url(self) -> str:
        """The URL without credentials (for messages)."""
        return redact_url(self._url)

    async def ping(self) -> bool:
        with self.call(f"Redis at {redact_url(self._url)}"):
            if self.cluster and isinstance(self.client, RedisCluster):
                await self.client.initialize()
            return bool(await self.redis.ping())

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    async def get(self, key: str) -> str | None:
        with self.call("Redis read"):
            return await self.redis.get(key)

    async def set(self, key: str, value: str, *, ttl_s: float | None = None, nx: bool = False) -> bool:
        with self.call("Redis write"):
            px = int(ttl_s * 1000) if ttl_s else None
            return bool(await self.redis.set(key, value, px=px, nx=nx))

    async def delete(self, *keys: str) -> int:
        """Delete keys (one command per key on a cluster: they may live in different slots)."""
        if not keys:
            return 0
        with self.call("Redis delete"):
            if self.cluster:
                return sum([int(await self.redis.delete(k)) for k in keys])
            return int(await self.redis.delete(*keys))

    async def get_json(self, key: str) -> Any | None:
        raw = await self.get(key)
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl_s: int) -> None:
        await self.set(key, json.dumps(value, default=str, separators=(",", ":")), ttl_s=ttl_s)

    async def publish(self, channel: str, message: str) -> int:
        with self.call("Redis publish"):
            return int(await self.redis.publish(channel, message))

    async def invalidate(self, *keys: str) -> int:
        """Delete keys and announce it so other processes drop their copies."""
        if not keys:
            return 0
        removed = await self.delete(*keys)
        await self.publish(INVALIDATION_CHANNEL, json.dumps({"keys": list(keys)}))
        return removed

    def script(self, source: str) -> Script:
        """A Lua script run by EVALSHA (loaded on first use). On a cluster every key of one call must share a
        slot: build them with `hash_tag`."""
        return Script(self, source)

    async def health(self) -> dict[str, object]:
        ok = await self.ping()
        with self.call("Redis info"):
            info = await self.redis.info("persistence")
        if self.cluster and isinstance(info, dict) and info and all(isinstance(v, dict) for v in info.values()):
            nodes = list(info.values())
            return {"ok": ok, "aof_enabled": all(bool(n.get("aof_enabled")) for n in nodes), "nodes": len(nodes)}
        return {"ok": ok, "aof_enabled": bool(info.get("aof_enabled"))}

    async def close(self) -> None:
        await self.breaker.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()
            self.client = None


class Script:
    """A registered Lua script whose errors are typed like every other call of the adapter."""

    def __init__(self, store: CacheStore, source: str) -> None:
        self._store = store
        self._source = source
        self._script = None

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        with self._store.call("Redis script"):
            if self._script is None:
                self._script = self._store.redis.register_script(self._source)
            return await self._script(keys=keys, args=args)
