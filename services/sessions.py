"""SessionService: write-through sessions. Create, touch and revoke write the PostgreSQL `sessions` table and
Redis together; `validate` reads Redis only, so a revocation is effective on the next request.

Fail closed: when Redis cannot answer, `validate` raises `SessionUnavailable` (the caller refuses the request),
never admits. A revocation whose Redis delete failed is recorded in PostgreSQL and raised as an error;
`reconcile_revoked` (run at start and after an outage) deletes what Redis still holds of revoked sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict

from stores.cache.sessions import CachedSession, SessionCache
from stores.errors import StoreUnavailable
from stores.postgres.pool import PostgresStore
from stores.postgres.sessions import SessionRepository, SessionRow

#: Persist `last_seen_at` to PostgreSQL at most this often per session (Redis has every touch).
TOUCH_PERSIST_EVERY = timedelta(seconds=60)


class SessionUnavailable(StoreUnavailable):
    """The session store cannot answer: the request is refused (fail closed)."""


class NewSession(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: str  # shown once to the client; only its hash is stored
    session: CachedSession


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
    def __init__(self, store: PostgresStore, cache: SessionCache, *, ttl: timedelta = timedelta(hours=8)) -> None:
        self.rows = SessionRepository(store)
        self.cache = cache
        self.ttl = ttl

    @classmethod
    def from_settings(cls, store: PostgresStore, cache: SessionCache, settings) -> SessionService:
        return cls(store, cache, ttl=timedelta(seconds=settings.session_ttl_s))

    async def create(self, user_id: UUID, *, ip: str | None = None, user_agent: str | None = None) -> NewSession:
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = SessionRow(id=uuid4(), user_id=user_id, token_hash=token_hash(token), created_at=now,
                         expires_at=now + self.ttl, last_seen_at=now, ip=ip, user_agent=(user_agent or None)
                         and user_agent[:500])
        await self.rows.insert(row)
        session = CachedSession(id=row.id, user_id=user_id, expires_at=row.expires_at, created_at=now,
                                last_seen_at=now)
        try:
            await self.cache.put(row.token_hash, session)
        except StoreUnavailable as exc:
            await self.rows.revoke(row.id, now)  # never leave a durable session its client cannot use
            raise SessionUnavailable("the session store is unavailable", store="redis") from exc
        return NewSession(token=token, session=session)

    async def validate(self, token: str) -> CachedSession | None:
        """The live session of `token`, or None (unknown, expired or revoked). Raises SessionUnavailable when
        Redis cannot answer: the caller must refuse, not admit."""
        try:
            found = await self.cache.get(token_hash(token))
        except StoreUnavailable as exc:
            raise SessionUnavailable("the session store is unavailable", store="redis") from exc
        if found is None or found.expires_at <= datetime.now(UTC):
            return None
        return found

    async def touch(self, token: str) -> CachedSession | None:
        """Record activity (Redis at once, PostgreSQL at most every minute); None when not a live session."""
        found = await self.validate(token)
        if found is None:
            return None
        now = datetime.now(UTC)
        updated = found.model_copy(update={"last_seen_at": now})
        try:
            await self.cache.put(token_hash(token), updated)
        except StoreUnavailable as exc:
            raise SessionUnavailable("the session store is unavailable", store="redis") from exc
        if found.last_seen_at is None or now - found.last_seen_at >= TOUCH_PERSIST_EVERY:
            await self.rows.touch(found.id, now)
        return updated

    async def revoke(self, token: str) -> bool:
        """Revoke a session in both stores; effective for the next request. False when it did not exist."""
        h = token_hash(token)
        found = await self.rows.revoke_by_hash(h, datetime.now(UTC))
        try:
            await self.cache.delete(h)
        except StoreUnavailable as exc:
            raise SessionUnavailable("revocation recorded, but the session store is unavailable; it is applied "
                                     "when the store is back (reconcile_revoked)", store="redis") from exc
        return found

    async def revoke_all(self, user_id: UUID) -> int:
        hashes = await self.rows.revoke_all(user_id, datetime.now(UTC))
        if hashes:
            try:
                await self.cache.delete(*hashes)
            except StoreUnavailable as exc:
                raise SessionUnavailable("revocations recorded, but the session store is unavailable",
                                         store="redis") from exc
        return len(hashes)

    async def reconcile_revoked(self, since: timedelta = timedelta(days=1)) -> int:
        """Delete from Redis every session revoked in PostgreSQL within `since` (idempotent)."""
        hashes = await self.rows.revoked_since(datetime.now(UTC) - since)
        return await self.cache.delete(*hashes) if hashes else 0
