"""What every repository shares: the store, replica routing for reads, scope clauses, result caps."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from stores.errors import StoreError
from stores.postgres.errors import pg_errors
from stores.postgres.pool import PostgresStore
from stores.scope import RowScope

#: No read returns more rows than this, whatever the caller asks.
MAX_LIMIT = 100


def cap_limit(limit: int | None, default: int = 50) -> int:
    return max(1, min(int(limit if limit is not None else default), MAX_LIMIT))


class Params:
    """Positional SQL parameters collected while building a query: `p.add(v)` returns `$n`."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{'::' + cast if cast else ''}"


def scope_clause(scope: RowScope, column: str, params: Params) -> str:
    """The row-scope condition, always part of the SQL: everyone, or `column = ANY(ids)` (empty: nobody)."""
    ids = scope.sql_ids()
    if ids is None:
        return "TRUE"
    return f"{column} = ANY({params.add(ids, 'uuid[]')})"


class Repository:
    """Base of the repositories: reads go to the replica unless `replica_reads=False`."""

    def __init__(self, store: PostgresStore, *, replica_reads: bool = True) -> None:
        if store is None:
            raise StoreError("a connected PostgresStore is required", store="postgres")
        self.store = store
        self.replica_reads = replica_reads

    @contextlib.asynccontextmanager
    async def _read(self, replica: bool | None = None) -> AsyncIterator[asyncpg.Connection]:
        use_replica = self.replica_reads if replica is None else replica
        with pg_errors():
            async with self.store.connection(replica=use_replica) as conn:
                yield conn
