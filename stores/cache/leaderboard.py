"""Leaderboards on sorted sets: `lb:credit:{<corridor>}:<YYYY-MM>`, member = pseudonymous handle, score = the
member's score improvement over 90 days. Members are handles only, never user ids."""

from __future__ import annotations

from stores.cache.client import CacheStore, hash_tag, redis_errors

#: A month's board is kept this long after its last update.
BOARD_TTL_S = 400 * 86_400


def board_key(corridor: str, month: str) -> str:
    return f"lb:credit:{hash_tag(corridor)}:{month}"


class LeaderboardStore:
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    async def set_score(self, corridor: str, month: str, handle: str, improvement: float) -> None:
        key = board_key(corridor, month)
        with redis_errors("Redis leaderboard write"):
            await self.store.redis.zadd(key, {handle: improvement})
            await self.store.redis.expire(key, BOARD_TTL_S)

    async def remove(self, corridor: str, months: list[str], handle: str) -> None:
        with redis_errors("Redis leaderboard write"):
            for month in months:
                await self.store.redis.zrem(board_key(corridor, month), handle)

    async def top(self, corridor: str, month: str, n: int) -> list[tuple[str, float]]:
        with redis_errors("Redis leaderboard read"):
            return [(m, float(s)) for m, s in
                    await self.store.redis.zrevrange(board_key(corridor, month), 0, max(0, n - 1), withscores=True)]

    async def all_scores(self, corridor: str, month: str) -> list[float]:
        with redis_errors("Redis leaderboard read"):
            return [float(s) for _, s in await self.store.redis.zrange(board_key(corridor, month), 0, -1,
                                                                      withscores=True)]

    async def rank(self, corridor: str, month: str, handle: str) -> int | None:
        with redis_errors("Redis leaderboard read"):
            r = await self.store.redis.zrevrank(board_key(corridor, month), handle)
        return None if r is None else int(r) + 1
