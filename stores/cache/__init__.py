"""Redis: sessions, rate limits, response cache, feature flags, pub/sub, leaderboards."""

from stores.cache.client import TTL_FX_RATES_S, TTL_PROFILES_S, TTL_SCORES_S, CacheStore

__all__ = ["TTL_FX_RATES_S", "TTL_PROFILES_S", "TTL_SCORES_S", "CacheStore"]
