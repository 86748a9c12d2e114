"""Monthly partitions of the fast-growing tables: create the coming months ahead of time."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from stores.errors import InvalidData
from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

#: Tables partitioned by month on `created_at` / `occurred_at` (migrations 0003 and 0005).
PARTITIONED = ("transactions", "ledger_entries", "audit_logs")


class PartitionReport(BaseModel):
    table: str
    created: int
    #: Rows of the covered months already sitting in the default partition (they block creating those months).
    rows_in_default: int
    newest: str | None


class PartitionRepository(Repository):
    async def ensure_ahead(self, months_ahead: int = 3, *, today: date | None = None) -> list[PartitionReport]:
        """Create this month's and the next `months_ahead` months' partitions of every partitioned table.

        Rows that landed in a table's default partition for one of those months make PostgreSQL refuse the
        new partition; that is reported with a clear error instead of a half-done run.
        """
        if not 0 <= months_ahead <= 60:
            raise InvalidData("months_ahead must be between 0 and 60", store="postgres")
        first = (today or date.today()).replace(day=1)
        out = []
        with pg_errors():
            async with self.store.transaction() as conn:
                for table in PARTITIONED:
                    time_col = "occurred_at" if table == "audit_logs" else "created_at"
                    blocking = await conn.fetchval(
                        f"SELECT count(*) FROM {table}_default WHERE {time_col} >= $1::date "
                        f"AND {time_col} < ($1::date + make_interval(months => $2))", first, months_ahead + 1)
                    if blocking:
                        raise InvalidData(f"{table}: {blocking} row(s) of the coming months sit in the default "
                                          "partition; move them out before creating these partitions",
                                          store="postgres")
                    created = await conn.fetchval("SELECT ensure_monthly_partitions($1::regclass, $2, $3)",
                                                  table, first, months_ahead + 1)
                    newest = await conn.fetchval(
                        "SELECT max(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = $1::regclass AND c.relname <> $2", table, f"{table}_default")
                    out.append(PartitionReport(table=table, created=created, rows_in_default=blocking, newest=newest))
        return out
