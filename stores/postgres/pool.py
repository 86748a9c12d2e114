"""PostgreSQL adapter: an asyncpg pool on the primary and one on the read replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from stores.errors import StoreConfigError, StoreError, StoreUnavailable, redact_url

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


def _connection_failed(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL connection failed ({type(exc).__name__})", store="postgres")


class PostgresStore:
    """Primary pool for writes, replica pool for reads that tolerate replication lag.

    A replica that is down (at connect or later) is not given up on: reads go to the primary meanwhile and
    the replica pool is re-created in the background, with a backoff of `replica_retry_s` (first, most)
    seconds between attempts; reads route back to it as soon as it connects.
    """

    def __init__(self, primary_url: str, replica_url: str | None = None, *, timeout: float = 5.0,
                 statement_timeout_ms: int = 5000, read_only: bool = False, min_size: int = 1,
                 max_size: int = 10, replica_retry_s: tuple[float, float] = (1.0, 30.0)) -> None:
        self._primary_url = primary_url
        self._replica_url = replica_url
        self._timeout = timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._read_only = read_only
        self._sizes = (min_size, max_size)
        self.primary: asyncpg.Pool | None = None
        self.replica: asyncpg.Pool | None = None
        self._reconnect = asyncio.Lock()
        self._retry_first, self._retry_max = replica_retry_s
        self._retry_delay = self._retry_first
        self._retry_at = 0.0
        self._retry_task: asyncio.Task[None] | None = None
        #: Why the replica is not in use (the last connect error), for health().
        self.replica_error: str | None = None

    def _kw(self) -> dict[str, object]:
        return {"timeout": self._timeout, "statement_timeout_ms": self._statement_timeout_ms,
                "min_size": self._sizes[0], "max_size": self._sizes[1]}

    async def connect(self) -> PostgresStore:
        self.primary = await _create_pool(self._primary_url, read_only=self._read_only, **self._kw())
        if self._replica_url and self.replica is None:
            try:
                self.replica = await _create_pool(self._replica_url, read_only=True, **self._kw())
                self.replica_error = None
            except StoreUnavailable as exc:
                # Reads fall back to the primary while the replica is down; it is retried lazily.
                self._replica_failed(str(exc))
        return self

    async def close(self) -> None:
        task, self._retry_task = self._retry_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pool in (self.replica, self.primary):
            if pool is not None:
                await pool.close()
        self.primary = self.replica = None

    def _replica_failed(self, why: str) -> None:
        """Stop routing reads to the replica; schedule the next attempt after the current backoff."""
        loop = asyncio.get_running_loop()
        self.replica_error = why
        self._retry_at = loop.time() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)

    def _replica_lost(self, pool: asyncpg.Pool, exc: BaseException) -> None:
        """The replica refused a new connection: drop its pool (its connections are dead), retry later.

        A timeout or a full pool is load, not an outage: that read goes to the primary, the pool stays.
        """
        if isinstance(exc, (TimeoutError, asyncpg.TooManyConnectionsError)):
            return
        if self.replica is pool:
            self.replica = None
            pool.terminate()
            self._retry_delay = self._retry_first
            self._replica_failed(f"PostgreSQL replica connection failed ({type(exc).__name__})")

    def _maybe_retry_replica(self) -> None:
        if self._retry_task is not None or asyncio.get_running_loop().time() < self._retry_at:
            return
        self._retry_task = asyncio.get_running_loop().create_task(self._retry_replica())

    async def _retry_replica(self) -> None:
        try:
            pool = await _create_pool(self._replica_url, read_only=True, **self._kw())
        except StoreError as exc:
            self._replica_failed(str(exc))
        else:
            if self.primary is None:  # closed meanwhile
                await pool.close()
            else:
                self.replica, self.replica_error = pool, None
                self._retry_delay = self._retry_first
        finally:
            self._retry_task = None

    async def _pool(self, replica: bool) -> asyncpg.Pool:
        if self.primary is None:
            # Down at start (or closed): try again, bounded by the connect timeout, so a server that
            # comes back is used without restarting the process.
            async with self._reconnect:
                if self.primary is None:
                    await self.connect()
        if replica and self.replica is None and self._replica_url:
            self._maybe_retry_replica()  # in the background: this read goes to the primary
        return self.replica if (replica and self.replica is not None) else self.primary

    @contextlib.asynccontextmanager
    async def connection(self, *, replica: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; `replica=True` routes to the read replica when there is one.

        When the replica cannot give a connection, the read goes to the primary (and the replica is
        retried in the background); a failure once the connection is in use is raised as StoreUnavailable.
        """
        pool = await self._pool(replica)
        on_replica = replica and pool is self.replica and self.replica is not None
        try:
            conn = await pool.acquire(timeout=self._timeout)
        except _CONNECT_ERRORS as exc:
            if not on_replica:
                raise _connection_failed(exc) from exc
            self._replica_lost(pool, exc)
            pool, on_replica = await self._pool(False), False
            try:
                conn = await pool.acquire(timeout=self._timeout)
            except _CONNECT_ERRORS as exc2:
                raise _connection_failed(exc2) from exc2
        try:
            yield conn
        except _CONNECT_ERRORS as exc:
            # Mid-use: the pool reconnects that slot on its next acquire, which falls back if it fails.
            raise _connection_failed(exc) from exc
        finally:
            if pool is self.primary or pool is self.replica:
                await pool.release(conn)
            else:  # the pool was dropped (replica lost) or closed meanwhile
                with contextlib.suppress(Exception):
                    await pool.release(conn)

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
            if self._replica_url:
                out["replica_error"] = self.replica_error or "not connected yet"
        return out
