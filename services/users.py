"""UserService: profiles (cached 1 h), profile and notification-preference updates, each committed together with
its change event (`change_events`, migration 0012), which the invalidation publisher turns into evictions."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.caching import PREFERENCES_TOPIC, PROFILE, USERS_TOPIC, profile_key
from services.payments import _validate
from stores.cache.aside import ReadThroughCache
from stores.errors import NotFound
from stores.postgres.errors import pg_errors
from stores.postgres.models import UserProfile
from stores.postgres.outbox import ChangeEventRepository
from stores.postgres.pool import PostgresStore
from stores.postgres.profiles import ProfileRepository
from stores.postgres.users import UserRepository
from stores.scope import RowScope


class ProfileUpdate(BaseModel):
    """Fields of a profile a service may change (PII has its own encrypted path)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["pending", "active", "suspended", "closed"] | None = None
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    home_currency: str | None = Field(None, pattern=r"^[A-Z]{3,4}$")
    kyc_level: Literal["none", "basic", "full"] | None = None


class PreferenceUpdate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Literal["email", "sms", "push", "whatsapp"]
    category: Literal["transactions", "security", "marketing", "credit"]
    enabled: bool


class UserService:
    def __init__(self, store: PostgresStore, *, cache: ReadThroughCache | None = None) -> None:
        self.store = store
        # Profiles are read on the primary: a replica could hand the cache a value older than the event.
        self.users = UserRepository(store, replica_reads=False)
        self.profiles = ProfileRepository(store, replica_reads=False)
        self.cache = cache or ReadThroughCache(None)

    async def profile(self, scope: RowScope, user_id: UUID) -> UserProfile:
        """The non-PII profile. Scope is checked before the cache; NotFound when missing or out of scope."""
        user_id = UUID(str(user_id))
        if not scope.allows(user_id):
            raise NotFound("user not found", store="postgres")

        async def load() -> UserProfile | None:
            try:
                return await self.users.get_profile(RowScope.users(user_id), user_id)
            except NotFound:
                return None

        found = await self.cache.get(PROFILE, profile_key(user_id), load)
        if found is None:
            raise NotFound("user not found", store="postgres")
        return found

    async def update_profile(self, user_id: UUID, changes: ProfileUpdate | dict[str, Any]) -> UserProfile:
        """Change profile fields and emit a `users` event in the same transaction; returns the new profile."""
        upd = _validate(ProfileUpdate, changes)
        fields = upd.model_dump(exclude_none=True)
        with pg_errors():
            async with self.store.transaction() as conn:
                await ProfileRepository.update_in(conn, user_id, fields)
                await ChangeEventRepository.emit_in(conn, USERS_TOPIC, str(user_id), user_id,
                                                    {"fields": sorted(fields)})
        return await self.users.get_profile(RowScope.users(user_id), user_id)

    async def preferences(self, user_id: UUID) -> list[dict[str, Any]]:
        return await self.profiles.preferences(user_id)

    async def set_preference(self, user_id: UUID, update: PreferenceUpdate | dict[str, Any]) -> None:
        """Switch one notification channel/category (security e-mails cannot be switched off: the database
        refuses it); emits a `notification_prefs` event."""
        upd = _validate(PreferenceUpdate, update)
        with pg_errors():
            async with self.store.transaction() as conn:
                await ProfileRepository.set_preference_in(conn, user_id, upd.channel, upd.category, upd.enabled)
                await ChangeEventRepository.emit_in(conn, PREFERENCES_TOPIC, str(user_id), user_id,
                                                    upd.model_dump())
