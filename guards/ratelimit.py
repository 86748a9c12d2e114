"""Sliding-window rate limits in Redis (atomic Lua), configured from `KREDETE_RATE_LIMIT_*`.

* Tool calls (and resource reads, prompt gets): per principal and per principal + tool, checked right after
  authentication, before the tool is looked up or authorised, so unknown and forbidden calls count too.
  The principal key is the *identity*, not the token: customers are keyed on role + user id (every token of
  one user shares one quota, whatever its subject), staff on role + subject (the subject is the staff
  identity; a staff member with several subjects is several identities, which the issuer controls).
  `KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS` (comma-separated, exact subjects of our own issuer) exempts
  benchmark or eval principals; their calls are audited with `rate_limit: exempt`.
* Failed authentications over HTTP: per client IP. Past the limit a refused request gets 429 with
  Retry-After instead of 401. Identical refusals (same IP, reason and outcome) are also counted per fixed
  window, so the HTTP guard audits the first one at once and the rest as one row with a count.

The keys carry digests, never subjects or tokens, and all live under `rl:` (the agent Redis user's ACL). Each
key names its identity (or IP digest) in a hash tag, so every key one script touches sits in one Redis Cluster
slot: `rl:{customer:<uuid>}:get_transaction`, `rl:{customer:<uuid>}:*`, `rl:{ip:<digest>}:authfail`.

**Redis down (or a cluster slot without a master): degrade, don't black out.** The check falls back to a
conservative limiter inside the process (`KREDETE_RATE_LIMIT_DEGRADED_PER_TOOL` / `_DEGRADED_PER_PRINCIPAL`,
default a fifth of the normal quotas), returns `degraded` (the audit row says `rate_limit: degraded`) and
counts it in `kredete_rate_limit_degraded`. Why this is safe: every process still limits every identity,
and with the quotas at a fifth, up to five server processes together stay within the normal limit; the
limiter returns to Redis on the next call that Redis answers.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from prometheus_client import Counter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from guards.errors import RateLimited
from guards.metrics import REGISTRY
from guards.principal import Principal, Role
from stores.cache.client import CacheStore, hash_tag
from stores.cache.metrics import REGISTRY as CACHE_REGISTRY
from stores.errors import StoreError

log = logging.getLogger("kredete.guards.ratelimit")

# The Redis layer's own metrics (cache reads, bypasses, dropped entries, invalidations) are served on the same
# /metrics as the guards': this module is what every server process that uses Redis imports.
REGISTRY.register(CACHE_REGISTRY)

RATE_LIMIT_DEGRADED = Counter("kredete_rate_limit_degraded", "Rate-limit checks made by the in-process fallback "
                              "because Redis failed, by outcome (counted, rate_limited)", ["outcome"],
                              registry=REGISTRY)

# For each window in turn (KEYS[i], limit ARGV[3 + i]): drop entries older than the window, count, and take a
# slot if below the limit; else stop and report when its oldest entry leaves the window. Every window of a call
# in one round trip, atomic, so concurrent calls cannot overshoot.
_SLIDING_WINDOWS = """
local now, window, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, tonumber(oldest[2]) + window - now}
  end
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
end
return {1, 0}
"""

# A failed authentication: the sliding window of the IP (KEYS[1]) decides 401 or 429, then the counter of
# identical refusals in this fixed window (KEYS[2] when admitted, KEYS[3] when limited) goes up by one.
# (GET + SET instead of INCR: the agent user's ACL has no INCR.)
_AUTH_FAILURE = """
local now, window, limit, member, agg_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local admitted, retry = 1, 0
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], window)
else
  admitted = 0
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  retry = tonumber(oldest[2]) + window - now
end
local agg = KEYS[3 - admitted]
local n = tonumber(redis.call('GET', agg) or '0') + 1
redis.call('SET', agg, tostring(n), 'PX', agg_ttl)
return {admitted, retry, n}
"""

# Claim a finished aggregation window once (across server processes) and read its count; -1 if claimed.
_CLAIM = """
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[1])) then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
return -1
"""


class RateLimits(BaseSettings):
    """Limits per sliding window; every field can be set as `KREDETE_RATE_LIMIT_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="KREDETE_RATE_LIMIT_", env_file=None, extra="ignore")

    per_tool: int = Field(60, ge=1)
    per_principal: int = Field(300, ge=1)
    window_ms: int = Field(60_000, ge=100)
    #: Failed HTTP authentications per client IP and window before refusals turn into 429.
    auth_failures_per_ip: int = Field(20, ge=1)
    #: Quotas of the in-process fallback while Redis cannot answer (per process; see the module doc).
    degraded_per_tool: int = Field(12, ge=1)
    degraded_per_principal: int = Field(60, ge=1)
    #: Exact token subjects (of our own issuer) that are not rate limited: benchmark and eval principals.
    exempt_subjects: Annotated[frozenset[str], NoDecode] = frozenset()

    @field_validator("exempt_subjects", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return frozenset(x.strip() for x in v.split(",") if x.strip())
        return v


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def identity_key(principal: Principal) -> str:
    """Whose quota a call spends: a customer's user, or a staff member's subject (see the module doc)."""
    if principal.role is Role.CUSTOMER and principal.user_id is not None:
        return f"{principal.role.value}:{principal.user_id}"
    return f"{principal.role.value}:{_digest(principal.subject)}"


@dataclass(frozen=True)
class AuthFailure:
    """What one failed authentication counted as."""

    admitted: bool  # still under the IP's limit: answer 401; else 429 after `retry_after_s`
    retry_after_s: float
    decision: Literal["denied", "rate_limited"]
    count_in_window: int  # identical refusals (IP, reason, decision) in this fixed window so far
    aggregate_key: str
    window_end_ms: int


class LocalWindows:
    """Sliding windows inside the process (the degraded mode): same semantics as the Redis script, bounded to the
    `max_keys` most recently used keys."""

    def __init__(self, max_keys: int = 20_000) -> None:
        self.max_keys = max_keys
        self._windows: OrderedDict[str, deque[int]] = OrderedDict()

    def _window(self, key: str, now: int, window_ms: int) -> deque[int]:
        entries = self._windows.get(key)
        if entries is None:
            entries = self._windows[key] = deque()
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        self._windows.move_to_end(key)
        while entries and entries[0] <= now - window_ms:
            entries.popleft()
        return entries

    def take(self, keys_limits: list[tuple[str, int]], now: int, window_ms: int) -> tuple[bool, int]:
        for key, limit in keys_limits:
            entries = self._window(key, now, window_ms)
            if len(entries) >= limit:
                return False, entries[0] + window_ms - now
            entries.append(now)
        return True, 0

    def count(self, key: str) -> int:
        entries = self._windows.get(key)
        return len(entries) if entries else 0


def _as_store(redis: Any) -> CacheStore | None:
    """The limiter works on a CacheStore (typed errors); a bare redis client is wrapped, None stays None."""
    if redis is None or isinstance(redis, CacheStore):
        return redis
    store = CacheStore("redis://unused")
    store.client = redis
    store.cluster = type(redis).__name__ == "RedisCluster"
    return store


class RateLimiter:
    """Checks the per-tool window, then the per-principal one; a call refused by the first spends nothing, one
    refused by the second has spent its per-tool slot. `redis` is the agent's `CacheStore` (None: Redis never
    connected, every check is degraded)."""

    def __init__(self, redis, limits: RateLimits | None = None, *, own_issuer: str | None = None) -> None:
        self._store = _as_store(redis)
        self.limits = limits or RateLimits()
        self.own_issuer = own_issuer
        self._script = self._store.script(_SLIDING_WINDOWS) if self._store else None
        self._auth_failure = self._store.script(_AUTH_FAILURE) if self._store else None
        self._claim = self._store.script(_CLAIM) if self._store else None
        self.local = LocalWindows()
        self._local_agg: dict[str, int] = {}
        self._last_log = 0.0

    def _degraded(self, exc: BaseException | None, outcome: str) -> None:
        RATE_LIMIT_DEGRADED.labels(outcome=outcome).inc()
        now = time.monotonic()
        if now - self._last_log > 10:
            self._last_log = now
            log.warning("rate limiting degraded to the in-process limiter: %s",
                        exc if exc is not None else "Redis is not connected")

    def is_exempt(self, principal: Principal) -> bool:
        return (principal.subject in self.limits.exempt_subjects
                and (self.own_issuer is None or principal.issuer == self.own_issuer))

    async def check(self, principal: Principal, tool: str) -> Literal["counted", "exempt", "degraded"]:
        """Raise RateLimited when either window is full; `tool` must be a known name or a fixed label.
        "degraded" when Redis failed and the in-process limiter decided."""
        if self.is_exempt(principal):
            return "exempt"
        now = int(time.time() * 1000)
        lim = self.limits
        tag = hash_tag(identity_key(principal))
        keys = [f"rl:{tag}:{tool}", f"rl:{tag}:*"]
        error: StoreError | None = None
        if self._script is not None:
            try:
                admitted, retry_ms = await self._script(
                    keys=keys, args=[now, lim.window_ms, f"{now}-{uuid.uuid4().hex[:8]}", lim.per_tool,
                                     lim.per_principal])
            except StoreError as exc:
                error = exc
            else:
                if not admitted:
                    raise RateLimited(max(float(retry_ms), 1.0) / 1000)
                return "counted"
        admitted, retry_ms = self.local.take([(keys[0], lim.degraded_per_tool), (keys[1], lim.degraded_per_principal)],
                                             now, lim.window_ms)
        self._degraded(error, "counted" if admitted else "rate_limited")
        if not admitted:
            raise RateLimited(max(float(retry_ms), 1.0) / 1000)
        return "degraded"

    async def auth_failure(self, client: str, code: str) -> AuthFailure:
        """Count one failed authentication from `client` (an IP) with reason `code` (a fixed string)."""
        lim = self.limits
        now = int(time.time() * 1000)
        window = now // lim.window_ms
        tag = hash_tag(f"ip:{_digest(client)}")
        base = f"rl:{tag}:authagg:{code}:{window}"
        keys = [f"rl:{tag}:authfail", f"{base}:denied", f"{base}:rate_limited"]
        try:
            if self._auth_failure is None:
                raise StoreError("Redis is not connected", store="redis")
            admitted, retry_ms, n = await self._auth_failure(
                keys=keys, args=[now, lim.window_ms, lim.auth_failures_per_ip, f"{now}-{uuid.uuid4().hex[:8]}",
                                 3 * lim.window_ms])
        except StoreError as exc:
            admitted, retry_ms = self.local.take([(keys[0], lim.auth_failures_per_ip)], now, lim.window_ms)
            agg = keys[1] if admitted else keys[2]
            n = self._local_agg[agg] = self._local_agg.get(agg, 0) + 1
            self._degraded(exc, "counted" if admitted else "rate_limited")
        decision: Literal["denied", "rate_limited"] = "denied" if admitted else "rate_limited"
        return AuthFailure(admitted=bool(admitted), retry_after_s=max(float(retry_ms), 1.0) / 1000,
                           decision=decision, count_in_window=int(n), aggregate_key=f"{base}:{decision}",
                           window_end_ms=(window + 1) * lim.window_ms)

    async def claim_aggregate(self, aggregate_key: str) -> int | None:
        """The final count of a finished window, to this caller only (None when another process claimed it)."""
        if aggregate_key in self._local_agg:  # counted in-process while Redis was down
            return self._local_agg.pop(aggregate_key)
        try:
            if self._claim is None:
                return None
            n = await self._claim(keys=[aggregate_key, f"{aggregate_key}:flushed"], args=[3 * self.limits.window_ms])
        except StoreError:
            return None
        return None if int(n) < 0 else int(n)
