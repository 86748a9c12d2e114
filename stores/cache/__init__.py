"""Redis: sessions, rate limits, response cache, feature flags, pub/sub, leaderboards."""

from stores.cache.client import (
    INVALIDATION_CHANNEL,
    TTL_FX_RATES_S,
    TTL_PROFILES_S,
    TTL_SCORES_S,
    CacheStore,
    hash_tag,
    redis_errors,
)

__all__ = ["INVALIDATION_CHANNEL", "TTL_FX_RATES_S", "TTL_PROFILES_S", "TTL_SCORES_S", "CacheStore", "hash_tag",
           "redis_errors"]
