"""Change events of the payments database: the transactional outbox (`change_events`, migration 0012).

Writers call `ChangeEventRepository.emit_in(conn, ...)` inside the transaction of their change, so the event
exists if and only if the change committed. Readers page by `seq` and keep a checkpoint per consumer name.
An identity sequence is allocated before COMMIT, so a later seq can commit first: readers therefore
checkpoint only the contiguous prefix they have seen, and skip a hole once it is `gap_timeout_s` old (a rolled
back writer never fills it). Delivery is at-least-once; handlers must be idempotent.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ConfigDict

from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

NOTIFY_CHANNEL = "change_events"


class PgChangeEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    topic: str
    entity_id: str
    user_id: UUID | None
    data: dict[str, Any]
    created_at: datetime


class ChangeEventRepository(Repository):
    """The outbox table and its consumers' checkpoints (always on the primary: a replica lags)."""

    def __init__(self, store, **_: Any) -> None:
        super().__init__(store, replica_reads=False)

    @staticmethod
    async def emit_in(conn: asyncpg.Connection, topic: str, entity_id: str, user_id: UUID | None,
                      data: dict[str, Any] | None = None) -> int:
        """Append an event in the caller's transaction; returns its seq."""
        with pg_errors():
            return await conn.fetchval(
                "INSERT INTO change_events (topic, entity_id, user_id, data) VALUES ($1, $2, $3, $4::jsonb) "
                "RETURNING seq", topic, entity_id, user_id, json.dumps(data or {}, default=str))

    async def after(self, seq: int, *, limit: int = 500) -> list[PgChangeEvent]:
        async with self._read() as conn:
            rows = await conn.fetch("SELECT seq, topic, entity_id, user_id, data, created_at FROM change_events "
                                    "WHERE seq > $1 ORDER BY seq LIMIT $2", seq, limit)
        return [PgChangeEvent(**{**dict(r), "data": json.loads(r["data"])}) for r in rows]

    async def last_seq(self) -> int:
        async with self._read() as conn:
            return int(await conn.fetchval("SELECT COALESCE(max(seq), 0) FROM change_events"))

    async def checkpoint(self, consumer: str) -> int | None:
        async with self._read() as conn:
            return await conn.fetchval("SELECT seq FROM change_event_checkpoints WHERE consumer = $1", consumer)

    async def save_checkpoint(self, consumer: str, seq: int) -> None:
        async with self._read() as conn:
            await conn.execute(
                "INSERT INTO change_event_checkpoints (consumer, seq) VALUES ($1, $2) ON CONFLICT (consumer) DO "
                "UPDATE SET seq = GREATEST(change_event_checkpoints.seq, EXCLUDED.seq), updated_at = now()",
                consumer, seq)
