"""The Redis half of write-through sessions: `session:{<token hash>}` → the session, expiring with it.

Only the service user may touch `session:*` (the agent user's ACL has no such key pattern). Reads come from
here alone: a session missing here is not valid, and a Redis failure is an error, never an admission.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from stores.cache.client import CacheStore, hash_tag


class CachedSession(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    user_id: UUID
    expires_at: datetime
    created_at: datetime
    last_seen_at: datetime | None = None


def session_key(token_hash: str) -> str:
    return f"session:{hash_tag(token_hash)}"


class SessionCache:
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    async def put(self, token_hash: str, session: CachedSession) -> None:
        ttl = (session.expires_at - datetime.now(UTC)).total_seconds()
        if ttl <= 0:
            return
        await self.store.set(session_key(token_hash), session.model_dump_json(), ttl_s=ttl)

    async def get(self, token_hash: str) -> CachedSession | None:
        raw = await self.store.get(session_key(token_hash))
        if raw is None:
            return None
        try:
            return CachedSession.model_validate(json.loads(raw))
        except ValueError:
            await self.store.delete(session_key(token_hash))  # unreadable: not a session
            return None

    async def delete(self, *token_hashes: str) -> int:
        return await self.store.delete(*(session_key(h) for h in token_hashes))
