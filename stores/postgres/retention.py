"""Retention of short-lived payments-database rows: ended sessions and idempotency keys."""

from __future__ import annotations

from datetime import datetime

from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

#: dataset -> (table, condition on $1 = the cutoff time)
PURGES: dict[str, tuple[str, str]] = {
    # a session ends when it expires or is revoked; it is kept `days` after that
    "postgres.sessions": ("sessions", "coalesce(least(revoked_at, expires_at), expires_at) < $1"),
    "postgres.idempotency_keys": ("idempotency_keys", "created_at < $1"),
}


class RetentionRepository(Repository):
    def __init__(self, store, **_: object) -> None:
        super().__init__(store, replica_reads=False)

    async def count(self, dataset: str, cutoff: datetime) -> int:
        table, cond = PURGES[dataset]
        async with self._read() as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {cond}", cutoff))

    async def purge(self, dataset: str, cutoff: datetime, *, batch: int = 10_000) -> int:
        """Delete in batches (short transactions, no long lock); returns how many rows went."""
        table, cond = PURGES[dataset]
        key = "id" if table == "sessions" else "(user_id, key)"
        total = 0
        while True:
            with pg_errors():
                async with self.store.connection() as conn:
                    status = await conn.execute(
                        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {cond} LIMIT {batch:d})",
                        cutoff)
            n = int(status.rsplit(" ", 1)[-1])
            total += n
            if n < batch:
                return total
