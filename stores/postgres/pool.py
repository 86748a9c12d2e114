"""PostgreSQL adapter: an asyncpg pool on the primary and one on the read replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from stores.errors import StoreConfigError, StoreUnavailable, redact_url

_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError,
                   asyncpg.ConnectionDoesNotExistError, asyncpg.TooManyConnectionsError)


async def _create_pool(url: str, *, timeout: float, statement_timeout_ms: int, read_only: bool,
                       min_size: int, max_size: int) -> asyncpg.Pool:
    settings = {"statement_timeout": str(statement_timeout_ms), "application_name": "kredete"}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    try:
        return await asyncio.wait_for(
            asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=timeout,
                                command_timeout=max(timeout, statement_timeout_ms / 1000 + 1),
                                server_settings=settings),
            timeout=timeout + 1,
        )
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidCatalogNameError) as exc:
        raise StoreConfigError(f"PostgreSQL refused the credentials or database of {redact_url(url)}",
                               store="postgres") from exc
    except _CONNECT_ERRORS as exc:
        raise StoreUnavailable(f"PostgreSQL at {redact_url(url)} is unreachable ({type(exc).__name__})",
                               store="postgres") from exc
    except ValueError as exc:
        raise StoreConfigError(f"malformed PostgreSQL URL {redact_url(url)}", store="postgres") from exc


class PostgresStore:
    """Primary pool for writes, replica pool for reads that tolerate replication lag."""

    def __init__(self, primary_url: str, replica_url: str | None = None, *, timeout: float = 5.0,
                 statement_timeout_ms: int = 5000, read_only: bool = False, min_size: int = 1,
                 max_size: int = 10) -> None:
        self._primary_url = primary_url
        self._replica_url = replica_url
        self._timeout = timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._read_only = read_only
        self._sizes = (min_size, max_size)
        self.primary: asyncpg.Pool | None = None
        self.replica: asyncpg.Pool | None = None
        self._reconnect = asyncio.Lock()

    async def connect(self) -> PostgresStore:
        kw = {"timeout": self._timeout, "statement_timeout_ms": self._statement_timeout_ms,
              "min_size": self._sizes[0], "max_size": self._sizes[1]}
        self.primary = await _create_pool(self._primary_url, read_only=self._read_only, **kw)
        if self._replica_url:
            try:
                self.replica = await _create_pool(self._replica_url, read_only=True, **kw)
            except StoreUnavailable:
                # Reads fall back to the primary when the replica is down; health() reports it.
                self.replica = None
        return self

    async def close(self) -> None:
        for pool in (self.replica, self.primary):
            if pool is not None:
                await pool.close()
        self.primary = self.replica = None

    async def _pool(self, replica: bool) -> asyncpg.Pool:
        if self.primary is None:
            # Down at start (or closed): try again, bounded by the connect timeout, so a server that
            # comes back is used without restarting the process.
            async with self._reconnect:
                if self.primary is None:
                    await self.connect()
        return self.replica if (replica and self.replica is not None) else self.primary

    @contextlib.asynccontextmanager
    async def connection(self, *, replica: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; `replica=True` routes to the read replica when there is one."""
        pool = await self._pool(replica)
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                yield conn
        except _CONNECT_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL connection failed ({type(exc).__name__})",
                                   store="postgres") from exc

    @contextlib.asynccontextmanager
    async def transaction(self, *, replica: bool = False,
                          isolation: str = "read_committed") -> AsyncIterator[asyncpg.Connection]:
        """One transaction: committed when the block ends, rolled back on any error."""
        async with self.connection(replica=replica) as conn, conn.transaction(
                isolation=isolation, readonly=replica or self._read_only):
            yield conn

    async def health(self) -> dict[str, object]:
        """Round trip to the primary and the replica; replication lag in seconds."""
        out: dict[str, object] = {}
        async with self.connection() as conn:
            out["primary"] = await conn.fetchval("SELECT 1") == 1
        if self.replica is not None:
            async with self.connection(replica=True) as conn:
                out["replica"] = await conn.fetchval("SELECT pg_is_in_recovery()")
                out["replica_lag_s"] = await conn.fetchval(
                    "SELECT COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float")
        else:
            out["replica"] = False
        return out
