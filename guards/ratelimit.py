"""Sliding-window rate limits in Redis, per principal and per principal+tool (atomic Lua)."""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel

from guards.errors import RateLimited
from guards.principal import Principal

# Drop entries older than the window, count, admit if below the limit; else report when the
# oldest entry leaves the window. One round trip, atomic, so concurrent calls cannot overshoot.
_SLIDING_WINDOW = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


class RateLimits(BaseModel):
    per_tool: int = 60
    per_principal: int = 300
    window_ms: int = 60_000


class RateLimiter:
    """Checks both windows; a refused call does not consume quota in either."""

    def __init__(self, redis, limits: RateLimits | None = None) -> None:
        self._redis = redis
        self.limits = limits or RateLimits()
        self._script = redis.register_script(_SLIDING_WINDOW)

    async def check(self, principal: Principal, tool: str) -> None:
        now = int(time.time() * 1000)
        lim = self.limits
        for key, limit in (
            (f"rl:{principal.subject}:{tool}", lim.per_tool),
            (f"rl:{principal.subject}:*", lim.per_principal),
        ):
            admitted, retry_ms = await self._script(
                keys=[key], args=[now, lim.window_ms, limit, f"{now}-{uuid.uuid4().hex[:8]}"]
            )
            if not admitted:
                raise RateLimited(max(float(retry_ms), 1.0) / 1000)
