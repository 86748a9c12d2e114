"""PostgreSQL statistics: statements (pg_stat_statements), table sizes, replication, feed high-water marks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from stores.postgres.errors import pg_errors
from stores.postgres.pool import PostgresStore


class StatementStats(BaseModel):
    """One normalised statement: constants replaced by $n, so no value of any row."""

    datname: str
    queryid: str
    statement: str
    calls: int
    total_s: float
    mean_s: float
    max_s: float
    rows: int


class TableSize(BaseModel):
    """A table with its partitions folded in: heap + indexes + TOAST bytes, and live rows (statistics)."""

    table: str
    bytes: int
    index_bytes: int
    rows: int


# Normalised DML only: utility statements are stored with their literals (and are not tracked here anyway).
_DML = r"^\s*(/\*.*?\*/\s*)?(select|insert|update|delete|with|merge)\M"

TOP_STATEMENTS = f"""
    SELECT d.datname, s.queryid::text AS queryid, min(regexp_replace(s.query, '\\s+', ' ', 'g')) AS statement,
           sum(s.calls)::bigint AS calls, sum(s.total_exec_time) / 1000.0 AS total_s,
           sum(s.total_exec_time) / 1000.0 / GREATEST(sum(s.calls), 1) AS mean_s,
           max(s.max_exec_time) / 1000.0 AS max_s, sum(s.rows)::bigint AS rows
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE s.queryid IS NOT NULL AND s.query ~* '{_DML}' AND ($2::text IS NULL OR d.datname = $2)
      AND s.userid IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = 'kredete_monitor')
    GROUP BY d.datname, s.queryid
    ORDER BY {{order}} DESC
    LIMIT $1
"""

# Partitions are folded into their root table; sizes include indexes and TOAST.
TABLE_SIZES = """
    WITH RECURSIVE tree AS (
      SELECT c.oid AS root, c.oid AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      UNION ALL
      SELECT tree.root, i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.rel)
    SELECT r.relname AS table, sum(pg_total_relation_size(t.rel))::bigint AS bytes,
           sum(pg_indexes_size(t.rel))::bigint AS index_bytes,
           sum(COALESCE(s.n_live_tup, 0))::bigint AS rows
    FROM tree t JOIN pg_class r ON r.oid = t.root LEFT JOIN pg_stat_user_tables s ON s.relid = t.rel
    GROUP BY r.relname ORDER BY bytes DESC
"""


class PostgresStats:
    """Statistics views of one database (the pool's); pg_stat_statements must be installed there."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def top_statements(self, limit: int = 5, *, order: str = "total", database: str | None = None
                             ) -> list[StatementStats]:
        """The `limit` statements with the most total time (`order="total"`) or the slowest mean (`"mean"`)."""
        column = {"total": "total_s", "mean": "mean_s", "calls": "calls", "max": "max_s"}[order]
        with pg_errors():
            async with self.store.connection() as conn:
                rows = await conn.fetch(TOP_STATEMENTS.format(order=column), limit, database)
        return [StatementStats(**dict(r)) for r in rows]

    async def has_statements(self) -> bool:
        with pg_errors():
            async with self.store.connection() as conn:
                return bool(await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"))

    async def table_sizes(self, schema: str = "public") -> list[TableSize]:
        with pg_errors():
            async with self.store.connection() as conn:
                rows = await conn.fetch(TABLE_SIZES, schema)
        return [TableSize(**dict(r)) for r in rows]

    async def database_bytes(self) -> int:
        with pg_errors():
            async with self.store.connection() as conn:
                return int(await conn.fetchval("SELECT pg_database_size(current_database())"))

    async def users(self) -> int:
        """Live rows of `users` (0 on a database without the payments schema)."""
        with pg_errors():
            async with self.store.connection() as conn:
                if not await conn.fetchval("SELECT to_regclass('public.users') IS NOT NULL"):
                    return 0
                return int(await conn.fetchval("SELECT count(*) FROM users"))

    async def newest(self, table: str, column: str) -> datetime | int | None:
        """max(column) of a feed's source table (an index keeps this fast), None when empty or absent."""
        if not (table.replace("_", "").isalnum() and column.replace("_", "").isalnum()):
            raise ValueError("table and column must be plain identifiers")
        with pg_errors():
            async with self.store.connection(replica=True) as conn:
                if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{table}"):
                    return None
                return await conn.fetchval(f'SELECT max("{column}") FROM "{table}"')

    async def first_after(self, table: str, cursor: str, value: int, at_column: str) -> datetime | None:
        """`at_column` of the first row with `cursor` > value (id-cursor feeds: the oldest unsynced row)."""
        if not all(x.replace("_", "").isalnum() for x in (table, cursor, at_column)):
            raise ValueError("table and columns must be plain identifiers")
        with pg_errors():
            async with self.store.connection(replica=True) as conn:
                return await conn.fetchval(
                    f'SELECT "{at_column}" FROM "{table}" WHERE "{cursor}" > $1 ORDER BY "{cursor}" LIMIT 1', value)

    async def first_change_after(self, table: str, at: str, row_id: str) -> datetime | None:
        """`updated_at` of the first row after an `(updated_at, id)` high-water mark (the oldest unsynced change)."""
        if not table.replace("_", "").isalnum():
            raise ValueError("table must be a plain identifier")
        with pg_errors():
            async with self.store.connection(replica=True) as conn:
                return await conn.fetchval(
                    f'SELECT updated_at FROM "{table}" WHERE (updated_at, id) > ($1::timestamptz, $2::uuid) '
                    "ORDER BY updated_at, id LIMIT 1", datetime.fromisoformat(at), row_id)
