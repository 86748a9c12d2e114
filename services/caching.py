"""What the services cache, under which keys, and which change events invalidate which keys.

Every key carries its owner in a hash tag, so a value, its generation and its fill lock share one cluster
slot: `cache:{<user id>}:score`, `cache:{<user id>}:profile`, `cache:{fx:<BASE>-<QUOTE>}:rate`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from config.settings import Settings
from stores.cache import TTL_FX_RATES_S, TTL_PROFILES_S, TTL_SCORES_S, CacheStore
from stores.cache.aside import EntryKind, ReadThroughCache
from stores.cache.client import hash_tag
from stores.postgres.models import FxRate, UserProfile

#: Topics of change events (Postgres `change_events` and the credit store's outbox) that touch cached values.
USERS_TOPIC = "users"
PREFERENCES_TOPIC = "notification_prefs"
FX_RATES_TOPIC = "fx_rates"
SCORES_TOPIC = "score_history"
REPORTS_TOPIC = "credit_reports"
#: Channel a writer pokes after appending to the credit store's outbox (the publisher then reads it at once).
WAKE_CHANNEL = "inval:wake"


class CreditScore(BaseModel):
    """A user's latest score point (across bureaus)."""

    model_config = ConfigDict(frozen=True)

    user_id: UUID
    score: int
    bureau: str
    score_model: str
    as_of: datetime
    source: Literal["bureau", "estimate"]


SCORE = EntryKind("score", CreditScore, TTL_SCORES_S, version=1)
PROFILE = EntryKind("profile", UserProfile, TTL_PROFILES_S, version=1)
FX_RATE = EntryKind("fx_rate", FxRate, TTL_FX_RATES_S, version=1)


def score_key(user_id: UUID | str) -> str:
    return f"cache:{hash_tag(str(UUID(str(user_id))))}:score"


def profile_key(user_id: UUID | str) -> str:
    return f"cache:{hash_tag(str(UUID(str(user_id))))}:profile"


def fx_key(base: str, quote: str) -> str:
    return f"cache:{hash_tag(f'fx:{base.upper()}-{quote.upper()}')}:rate"


def keys_for(topic: str, user_id: str | None, entity_id: str, data: dict) -> list[str]:
    """The cache keys a change event makes stale (none for topics nothing caches)."""
    if topic in (SCORES_TOPIC, REPORTS_TOPIC) and user_id:
        return [score_key(user_id)]
    if topic == USERS_TOPIC and user_id:
        return [profile_key(user_id)]
    if topic == FX_RATES_TOPIC:
        base, quote = data.get("base"), data.get("quote")
        if base and quote:
            return [fx_key(base, quote)]
    return []


def read_through(store: CacheStore | None, settings: Settings) -> ReadThroughCache:
    """The cache-aside front of one process, configured from settings."""
    return ReadThroughCache(store, jitter=settings.cache_ttl_jitter, negative_ttl_s=settings.cache_negative_ttl_s,
                            local_ttl_s=settings.cache_local_ttl_s)
