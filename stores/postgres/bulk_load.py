"""Bulk loading: one dedicated connection (not pooled) and COPY into a table, as the seeder uses them.

COPY is the fastest way in; the seeder streams rows it has already encoded in COPY text format. Errors
inside the block are the server's own (the seeder reports the rule a batch broke); connecting fails
with a typed store error.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Iterable, Sequence

import asyncpg

from stores.errors import StoreConfigError, StoreUnavailable, redact_url

#: A connection of the PostgreSQL driver, as `direct_connection` yields it.
Connection = asyncpg.Connection


@contextlib.asynccontextmanager
async def direct_connection(url: str, *, timeout: float = 10.0,
                            command_timeout: float | None = None) -> AsyncIterator[Connection]:
    """One connection of its own for a long bulk load (session settings, one long transaction)."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout, command_timeout=command_timeout)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidCatalogNameError) as exc:
        raise StoreConfigError(f"PostgreSQL refused the credentials or database of {redact_url(url)}",
                               store="postgres") from exc
    except (TimeoutError, OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
        raise StoreUnavailable(f"PostgreSQL at {redact_url(url)} is unreachable ({type(exc).__name__})",
                               store="postgres") from exc
    try:
        yield conn
    finally:
        await conn.close()


async def copy_records(conn: Connection, table: str, records: Iterable[tuple], columns: Sequence[str]) -> None:
    """COPY Python tuples into `table` (binary protocol; the driver encodes each value)."""
    await conn.copy_records_to_table(table, records=records, columns=list(columns))


async def copy_text(conn: Connection, table: str, data: bytes, columns: Sequence[str]) -> None:
    """COPY rows already encoded in PostgreSQL's text format into `table`."""
    await conn.copy_to_table(table, source=io.BytesIO(data), columns=list(columns), format="text")
