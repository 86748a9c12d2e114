"""Keyset feeds: the rows of a table changed after a high-water mark, page by page (the search indexes' source).

A feed reads only its listed columns, never an encrypted PII column. Its cursor is an opaque string the
caller keeps (in a checkpoint): `<updated_at>|<id>` for tables stamped on change, `<id>` for the
append-only audit log. Updated-at feeds start `lag` behind the high-water mark: a row committed late with
an earlier `updated_at` (a long transaction) is still read, and the caller rewrites re-read rows
idempotently. Reads go to the replica (the caller's mark only moves past rows it has seen there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from stores.postgres.base import Repository
from stores.postgres.pool import PostgresStore

#: How far behind its high-water mark an updated-at feed starts reading again.
DEFAULT_LAG = timedelta(minutes=5)
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class FeedTable:
    """A table (or view) a feed reads, the columns it reads, and what orders its rows."""

    table: str
    columns: tuple[str, ...]
    cursor: Literal["updated_at", "id"]


# The `*_searchable` views (migration 0014, dsr area) leave erased users out, so no rebuild re-indexes them.
TRANSACTIONS = FeedTable("transactions_searchable", (
    "id", "user_id", "kind", "status", "corridor_id", "currency", "amount_minor", "fee_minor", "dest_currency",
    "dest_amount_minor", "fx_rate", "reference", "counterparty_name", "description", "failure_reason",
    "created_at", "updated_at", "completed_at"), "updated_at")
# users_public without erased users: no encrypted column (the agent role can read it; `users` it cannot).
USERS = FeedTable("users_searchable", (
    "id", "status", "country", "home_currency", "kyc_level", "deleted_at", "created_at", "updated_at"), "updated_at")
# Append-only, ids drawn under audit_append's lock: they commit in id order, an id cursor skips nothing.
# Rows of an erased user stay, with the user id (and a subject naming them) masked.
AUDIT_LOGS = FeedTable("audit_logs_searchable", (
    "id", "occurred_at", "actor_subject", "actor_role", "actor_user_id", "action", "resource", "args_digest",
    "decision", "reason", "rows_returned", "redactions", "latency_ms", "request_id"), "id")


@dataclass(frozen=True)
class FeedPage:
    """Rows in cursor order, when they were read, and the cursor just past the last one."""

    read_at: datetime
    rows: list[dict[str, Any]]
    cursor: str


class KeysetFeedRepository(Repository):
    """Pages of one FeedTable after a cursor."""

    def __init__(self, store: PostgresStore, feed: FeedTable, *, lag: timedelta | float = DEFAULT_LAG) -> None:
        super().__init__(store)
        self.feed = feed
        self.lag = lag if isinstance(lag, timedelta) else timedelta(seconds=float(lag))

    def start_after(self, high_water: str | None) -> str | None:
        """Where a pass starts: `lag` before the high-water mark (updated-at feeds), or at it."""
        if high_water is None or self.feed.cursor == "id" or not self.lag:
            return high_water
        ts, _, _ = high_water.partition("|")
        return f"{(datetime.fromisoformat(ts) - self.lag).isoformat()}|{_NIL_UUID}"

    async def pages(self, high_water: str | None, *, batch: int = 1000) -> AsyncIterator[FeedPage]:
        """Every row from `start_after(high_water)` on (all rows when None), `batch` at a time."""
        cols = ", ".join(self.feed.columns)
        if self.feed.cursor == "id":
            sql = (f"SELECT {cols} FROM {self.feed.table} WHERE ($1::bigint IS NULL OR id > $1::bigint) "
                   f"ORDER BY id LIMIT {int(batch):d}")
        else:
            sql = (f"SELECT {cols} FROM {self.feed.table} WHERE ($1::timestamptz IS NULL OR (updated_at, id) > "
                   f"($1::timestamptz, $2::uuid)) ORDER BY updated_at, id LIMIT {int(batch):d}")
        after = self.start_after(high_water)
        while True:
            read_at = datetime.now(UTC)
            async with self._read() as conn:
                rows = [dict(r) for r in await conn.fetch(sql, *self._decode(after))]
            if not rows:
                return
            after = self._encode(rows[-1])
            yield FeedPage(read_at=read_at, rows=rows, cursor=after)
            if len(rows) < batch:
                return

    async def reaches(self, cursor: str) -> bool:
        """Whether the table still holds a row at or past `cursor` (an append-only table that does not was
        emptied or recreated since the cursor was taken)."""
        cols, order = ("id", "id DESC") if self.feed.cursor == "id" else ("updated_at, id", "updated_at DESC, id DESC")
        async with self._read() as conn:
            row = await conn.fetchrow(f"SELECT {cols} FROM {self.feed.table} ORDER BY {order} LIMIT 1")
        return row is not None and self._decode(self._encode(dict(row))) >= self._decode(cursor)

    def later(self, a: str | None, b: str) -> str:
        """The later of two cursors (`a` may be None: no mark yet)."""
        return b if a is None or self._decode(b) > self._decode(a) else a

    def _encode(self, row: dict[str, Any]) -> str:
        if self.feed.cursor == "id":
            return str(row["id"])
        return f"{row['updated_at'].isoformat()}|{row['id']}"

    def _decode(self, value: str | None) -> tuple[Any, ...]:
        if self.feed.cursor == "id":
            return (None if value is None else int(value),)
        if value is None:
            return (None, None)
        ts, _, rid = value.partition("|")
        return (datetime.fromisoformat(ts), rid)
