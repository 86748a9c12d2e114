"""Writes of the user domain (profile fields, notification preferences, leaderboard opt-ins), each in the
caller's transaction so the service can append its change event in the same one."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from stores.errors import InvalidData, NotFound
from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

#: Profile columns a service may change (PII columns go through the encrypted path, not here).
UPDATABLE = ("status", "country", "home_currency", "kyc_level")


class ProfileRepository(Repository):
    @staticmethod
    async def update_in(conn: asyncpg.Connection, user_id: UUID, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(UPDATABLE)
        if unknown or not changes:
            raise InvalidData(f"cannot update {sorted(unknown) or 'nothing'}", store="postgres")
        cols = list(changes)
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
        with pg_errors():
            done = await conn.execute(f"UPDATE users SET {sets} WHERE id = $1 AND deleted_at IS NULL", user_id,
                                      *(changes[c] for c in cols))
        if not done.endswith(" 1"):
            raise NotFound("user not found", store="postgres")

    @staticmethod
    async def set_preference_in(conn: asyncpg.Connection, user_id: UUID, channel: str, category: str,
                                enabled: bool) -> None:
        with pg_errors():
            await conn.execute(
                "INSERT INTO notification_prefs (user_id, channel, category, enabled) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (user_id, channel, category) DO UPDATE SET enabled = EXCLUDED.enabled, "
                "updated_at = now()", user_id, channel, category, enabled)

    async def preferences(self, user_id: UUID) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = await conn.fetch("SELECT channel::text, category::text, enabled FROM notification_prefs "
                                    "WHERE user_id = $1 ORDER BY channel, category", user_id)
        return [dict(r) for r in rows]


class OptInRepository(Repository):
    """Leaderboard opt-ins: a user appears on leaderboards only with a row here, under its handle."""

    def __init__(self, store) -> None:
        super().__init__(store, replica_reads=False)

    async def opt_in(self, user_id: UUID, handle: str, corridor_id: str) -> str:
        """Opt in to the leaderboards of a corridor (again: the corridor changes, the first handle is kept);
        returns the handle."""
        async with self._read() as conn:
            return await conn.fetchval(
                "INSERT INTO leaderboard_optins (user_id, handle, corridor_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (user_id) DO UPDATE SET corridor_id = EXCLUDED.corridor_id RETURNING handle",
                user_id, handle, corridor_id)

    async def get(self, user_id: UUID) -> tuple[str, str] | None:
        """(handle, corridor) of an opted-in user."""
        async with self._read() as conn:
            row = await conn.fetchrow("SELECT handle, corridor_id FROM leaderboard_optins WHERE user_id = $1",
                                      user_id)
        return (row["handle"], row["corridor_id"]) if row else None

    async def opt_out(self, user_id: UUID) -> bool:
        async with self._read() as conn:
            return (await conn.execute("DELETE FROM leaderboard_optins WHERE user_id = $1", user_id)).endswith(" 1")

