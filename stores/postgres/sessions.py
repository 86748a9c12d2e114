"""The `sessions` table: the durable half of write-through sessions (Redis holds the copy reads use)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from stores.errors import NotFound
from stores.postgres.base import Repository

_COLUMNS = "id, user_id, token_hash, created_at, expires_at, last_seen_at, host(ip) AS ip, user_agent, revoked_at"


class SessionRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    user_id: UUID
    token_hash: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    revoked_at: datetime | None = None


class SessionRepository(Repository):
    def __init__(self, store) -> None:
        super().__init__(store, replica_reads=False)

    async def insert(self, row: SessionRow) -> None:
        async with self._read() as conn:
            await conn.execute(
                "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at, last_seen_at, ip, user_agent)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::inet, $8)", row.id, row.user_id, row.token_hash,
                row.created_at, row.expires_at, row.last_seen_at, row.ip, row.user_agent)

    async def touch(self, session_id: UUID, at: datetime) -> bool:
        async with self._read() as conn:
            done = await conn.execute("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                                      session_id, at)
        return done.endswith(" 1")

    async def revoke(self, session_id: UUID, at: datetime) -> bool:
        """Mark revoked (idempotent: the first revocation time is kept)."""
        async with self._read() as conn:
            done = await conn.execute("UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                                      session_id, at)
        return done.endswith(" 1")

    async def revoke_by_hash(self, token_hash: str, at: datetime) -> bool:
        async with self._read() as conn:
            done = await conn.execute("UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) "
                                      "WHERE token_hash = $1", token_hash, at)
        return done.endswith(" 1")

    async def revoke_all(self, user_id: UUID, at: datetime) -> list[str]:
        """Revoke every live session of a user; returns their token hashes."""
        async with self._read() as conn:
            rows = await conn.fetch("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL "
                                    "RETURNING token_hash", user_id, at)
        return [r["token_hash"] for r in rows]

    async def revoked_since(self, since: datetime) -> list[str]:
        async with self._read() as conn:
            rows = await conn.fetch("SELECT token_hash FROM sessions WHERE revoked_at >= $1 AND expires_at > now()",
                                    since)
        return [r["token_hash"] for r in rows]

    async def get(self, session_id: UUID) -> SessionRow:
        async with self._read() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM sessions WHERE id = $1", session_id)
        if row is None:
            raise NotFound("no such session", store="postgres")
        return SessionRow.model_validate(dict(row))
