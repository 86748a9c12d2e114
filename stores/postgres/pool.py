"""PostgreSQL adapter: an asyncpg pool on the primary and one per read replica.

A replica URL may name several hosts, libpq style (`postgresql://u:p@h1:5433,h2:5434/db`): each host gets its
own pool and reads are spread over them (round robin). A replica that is down, promoted, not streaming from
this primary, or lagging past `max_lag_bytes` / `max_lag_s` is skipped until it recovers; with none left,
reads go to the primary (always, when the replica URL is the primary's). Lag comes from the primary's
`pg_stat_replication` (bytes behind in WAL and `replay_lag`), matched to a replica by its `cluster_name` (the WAL
receiver's application_name).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from config.logs import tag_sessions
from stores import metrics
from stores.breaker import Breaker
from stores.errors import StoreConfigError, StoreError, StoreUnavailable, redact_url
from stores.postgres.errors import is_outage

_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError,
                   asyncpg.ConnectionDoesNotExistError, asyncpg.TooManyConnectionsError)

#: Lag of every standby, seen from the primary; lsn columns need pg_monitor (NULL otherwise: then the
#: replica's own replay position is compared with the primary's current one).
_LAG_SQL = ("SELECT application_name, state, sync_state, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes, "
            "EXTRACT(EPOCH FROM replay_lag)::float8 AS lag_s FROM pg_stat_replication")


def split_hosts(url: str) -> list[str]:
    """One URL per host of a libpq multi-host URL (a single-host URL comes back alone)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return [url]
    prefix = f"{userinfo}@" if userinfo else ""
    return [urlunsplit(parts._replace(netloc=prefix + h)) for h in hosts.split(",") if h]


def _host_of(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]


async def _session_kept(_conn: asyncpg.Connection) -> None:
    """Release without the reset round trip (`light_reset`): asyncpg still rolls back an open transaction and
    drops listeners before calling this; only session state (SET, session advisory locks, LISTEN, held cursors)
    survives, and the pools that use it (the MCP server's SELECT-only and append-only roles) create none."""


async def _create_pool(url: str, *, timeout: float, statement_timeout_ms: int, read_only: bool,
                       min_size: int, max_size: int, light_reset: bool = False) -> asyncpg.Pool:
    settings = {"statement_timeout": str(statement_timeout_ms), "application_name": "kredete"}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    try:
        return await asyncio.wait_for(
            asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=timeout,
                                command_timeout=max(timeout, statement_timeout_ms / 1000 + 1),
                                server_settings=settings, reset=_session_kept if light_reset else None),
            timeout=timeout + 1,
        )
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidCatalogNameError) as exc:
        raise StoreConfigError(f"PostgreSQL refused the credentials or database of {redact_url(url)}",
                               store="postgres") from exc
    except (*_CONNECT_ERRORS, asyncpg.TargetServerAttributeNotMatched) as exc:
        raise StoreUnavailable(f"PostgreSQL at {redact_url(url)} is unreachable ({type(exc).__name__})",
                               store="postgres") from exc
    except ValueError as exc:
        raise StoreConfigError(f"malformed PostgreSQL URL {redact_url(url)}", store="postgres") from exc


@dataclass
class _Held:
    """A checked-out connection and where it came from."""

    pool: asyncpg.Pool
    conn: asyncpg.Connection
    on_primary: bool


@dataclass
class _Call:
    """The PostgreSQL sessions one call (`calls(label)`) used: server, backend pid and when (`call_sessions`)."""

    label: str
    sessions: list[dict[str, object]] = field(default_factory=list)


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("kredete_pg_call", default=None)


@contextlib.asynccontextmanager
async def calls(label: str) -> AsyncIterator[None]:
    """One call (an MCP tool call, labelled by its tool): every connection it checks out of any store is recorded
    (`call_sessions`), so the server's logs, which name each session by its backend pid, can be attributed to it
    without renaming the session (KREDETE_MONITOR_TAG_SESSIONS; a round trip per call saved)."""
    token = _CALL.set(_Call(label))
    try:
        yield
    finally:
        _CALL.reset(token)


def call_sessions() -> list[dict[str, object]]:
    """The sessions the current call (`calls`) has used so far, in order of release: `{"server": "host:port",
    "pid": backend pid, "from": checkout, "to": release}` (epoch milliseconds, widened to whole milliseconds
    as PostgreSQL's log times are: the checkout rounded down, the release up). Empty outside a call."""
    call = _CALL.get()
    return list(call.sessions) if call is not None else []


def _record(call: _Call, held: _Held, started: float) -> None:
    """Record a session the call used (never raises: a session not recorded is a log line not attributed)."""
    try:
        addr = getattr(held.conn, "_addr", None)  # where this connection went (a multi-host URL names several)
        server = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else ""
        call.sessions.append({"server": server, "pid": held.conn.get_server_pid(),
                              "from": math.floor(started * 1000), "to": math.ceil(time.time() * 1000)})
    except Exception:  # noqa: S110 - attribution is best effort; the call itself must not fail on it
        pass


def _connection_failed(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL connection failed ({type(exc).__name__})", store="postgres")


@dataclass
class ReplicaState:
    """One read replica: its pool (None while down), why it is skipped, and its last measured lag."""

    url: str
    pool: asyncpg.Pool | None = None
    #: Its `cluster_name`, the application_name its WAL receiver shows in the primary's pg_stat_replication.
    name: str = ""
    #: Why it is not connected (last connect error); None when connected.
    error: str | None = None
    #: Why reads skip it although connected (lagging, promoted, not streaming); None when in use.
    skipped: str | None = None
    lag_bytes: int | None = None
    lag_s: float | None = None
    sync_state: str | None = None
    retry_at: float = 0.0
    retry_delay: float = 0.0
    retry_task: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        return _host_of(self.url)

    @property
    def in_use(self) -> bool:
        return self.pool is not None and self.skipped is None

    def describe(self) -> dict[str, object]:
        return {"host": self.host, "name": self.name or None, "connected": self.pool is not None,
                "in_use": self.in_use, "lag_bytes": self.lag_bytes, "lag_s": self.lag_s,
                "sync_state": self.sync_state, "error": self.error, "skipped": self.skipped}


class PostgresStore:
    """Primary pool for writes, replica pools for reads that tolerate replication lag.

    A replica that is down (at connect or later) is not given up on: reads go to the other replicas (or the
    primary) meanwhile and its pool is re-created in the background, with a backoff of `replica_retry_s`
    (first, most) seconds between attempts. Lag is re-measured at most every `lag_check_s` seconds, in the
    background of the reads that need it.

    The primary URL may be multi-host with `target_session_attrs=primary` (the HA profile): asyncpg then
    connects to whichever host is the primary, so after a failover new connections find the new primary.

    `breaker` (`stores.breaker`, named `name`) guards the primary: after consecutive outage failures on it,
    calls that need the primary are refused at once until a probe (`SELECT 1`) answers. Replica reads are
    not counted: a replica that fails is skipped, as above.
    """

    def __init__(self, primary_url: str, replica_url: str | None = None, *, timeout: float = 5.0,
                 statement_timeout_ms: int = 5000, read_only: bool = False, min_size: int = 1,
                 max_size: int = 10, replica_retry_s: tuple[float, float] = (1.0, 30.0),
                 max_lag_bytes: int = 16 * 1024 * 1024, max_lag_s: float = 5.0, lag_check_s: float = 1.0,
                 name: str = "postgres", light_reset: bool = False) -> None:
        self._primary_url = primary_url
        #: Release connections without asyncpg's `RESET ALL` round trip (see `_session_kept`; perf, issue 15).
        self._light_reset = light_reset
        self._timeout = timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._read_only = read_only
        self._sizes = (min_size, max_size)
        self.primary: asyncpg.Pool | None = None
        self._retry_first, self._retry_max = replica_retry_s
        # A replica URL that is the primary's (an external primary alone, the `lean` stack profile) is no replica:
        # reads go to the primary's pool, and no second pool is opened on it to be skipped as "not a standby".
        self.replicas = [ReplicaState(u, retry_delay=self._retry_first) for u in split_hosts(replica_url)] \
            if replica_url and replica_url != primary_url else []
        self._reconnect = asyncio.Lock()
        self._rr = itertools.count()
        self.max_lag_bytes, self.max_lag_s, self._lag_check_s = max_lag_bytes, max_lag_s, lag_check_s
        self._lag_checked_at = 0.0
        self._lag_task: asyncio.Task[None] | None = None
        self.breaker = Breaker(name, probe=self._probe)
        metrics.track_postgres(self)  # pool gauges on /metrics

    # --- compatibility: one replica --------------------------------------------------------------
    @property
    def replica(self) -> asyncpg.Pool | None:
        """The first replica pool in use (None when reads go to the primary)."""
        return next((r.pool for r in self.replicas if r.in_use), None)

    @property
    def replica_error(self) -> str | None:
        """Why no replica is in use, when none is."""
        if self.replica is not None or not self.replicas:
            return None
        return "; ".join(f"{r.host}: {r.error or r.skipped or 'not connected yet'}" for r in self.replicas)

    def _kw(self) -> dict[str, object]:
        return {"timeout": self._timeout, "statement_timeout_ms": self._statement_timeout_ms,
                "min_size": self._sizes[0], "max_size": self._sizes[1], "light_reset": self._light_reset}

    async def connect(self) -> PostgresStore:
        self.primary = await _create_pool(self._primary_url, read_only=self._read_only, **self._kw())
        await asyncio.gather(*(self._open_replica(r, strict=True) for r in self.replicas if r.pool is None))
        return self

    async def _open_replica(self, rep: ReplicaState, *, strict: bool = False) -> None:
        """Connect one replica; a refused login or database raises when `strict` (a configuration error),
        anything else marks it down and schedules a retry."""
        try:
            pool = await _create_pool(rep.url, read_only=True, **self._kw())
            async with pool.acquire(timeout=self._timeout) as conn:
                rep.name = await conn.fetchval("SELECT current_setting('cluster_name')") or ""
        except StoreConfigError as exc:
            # A database missing on the replica may be one just created on the primary, not replayed yet.
            if strict and not isinstance(exc.__cause__, asyncpg.InvalidCatalogNameError):
                raise
            self._replica_failed(rep, f"PostgreSQL replica {rep.host} refused the login or database")
            return
        except StoreError as exc:
            # Reads go elsewhere while this replica is down; it is retried lazily.
            self._replica_failed(rep, str(exc))
            return
        except _CONNECT_ERRORS as exc:
            with contextlib.suppress(Exception):
                pool.terminate()
            self._replica_failed(rep, f"PostgreSQL replica {rep.host} failed ({type(exc).__name__})")
            return
        if self.primary is None:  # closed meanwhile
            await pool.close()
            return
        rep.pool, rep.error, rep.retry_delay = pool, None, self._retry_first

    async def close(self) -> None:
        await self.breaker.close()
        tasks = [r.retry_task for r in self.replicas] + [self._lag_task]
        for r in self.replicas:
            r.retry_task = None
        self._lag_task = None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for rep in self.replicas:
            if rep.pool is not None:
                await rep.pool.close()
                rep.pool = None
        if self.primary is not None:
            await self.primary.close()
        self.primary = None

    def _replica_failed(self, rep: ReplicaState, why: str) -> None:
        """Stop routing reads to this replica; schedule its next attempt after the current backoff."""
        loop = asyncio.get_running_loop()
        rep.error = why
        rep.retry_at = loop.time() + rep.retry_delay
        rep.retry_delay = min(rep.retry_delay * 2, self._retry_max)

    def _replica_lost(self, rep: ReplicaState, pool: asyncpg.Pool, exc: BaseException) -> None:
        """The replica refused a new connection: drop its pool (its connections are dead), retry later.

        A timeout or a full pool is load, not an outage: that read goes elsewhere, the pool stays.
        """
        if isinstance(exc, (TimeoutError, asyncpg.TooManyConnectionsError)):
            return
        if rep.pool is pool:
            rep.pool = None
            pool.terminate()
            rep.retry_delay = self._retry_first
            self._replica_failed(rep, f"PostgreSQL replica {rep.host} connection failed ({type(exc).__name__})")

    def _maybe_retry_replicas(self) -> None:
        loop = asyncio.get_running_loop()
        for rep in self.replicas:
            if rep.pool is None and rep.retry_task is None and loop.time() >= rep.retry_at:
                rep.retry_task = loop.create_task(self._retry_replica(rep))

    async def _retry_replica(self, rep: ReplicaState) -> None:
        try:
            await self._open_replica(rep)
        finally:
            rep.retry_task = None

    # --- lag ---------------------------------------------------------------------------------------
    def _maybe_check_lag(self) -> None:
        loop = asyncio.get_running_loop()
        if self._lag_task is None and loop.time() - self._lag_checked_at >= self._lag_check_s:
            self._lag_checked_at = loop.time()
            self._lag_task = loop.create_task(self._check_lag_bg())

    async def _check_lag_bg(self) -> None:
        try:
            await self.check_lag()
        except Exception:  # noqa: S110 - a failed measurement leaves the last verdict; the next read retries
            pass
        finally:
            self._lag_task = None

    async def check_lag(self) -> list[dict[str, object]]:
        """Measure every connected replica's lag now (pg_stat_replication on the primary) and decide which
        ones reads may use; returns the per-replica picture (as `health()` shows it)."""
        if self.primary is None:
            await self.connect()
        async with self.primary.acquire(timeout=self._timeout) as conn:
            rows = {r["application_name"]: r for r in await conn.fetch(_LAG_SQL)}
            current = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        for rep in self.replicas:
            if rep.pool is None:
                continue
            try:
                async with rep.pool.acquire(timeout=self._timeout) as conn:
                    standby, behind, since_replay = await conn.fetchrow(
                        "SELECT pg_is_in_recovery(), "
                        "pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint, "
                        "EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8", current)
            except _CONNECT_ERRORS as exc:
                self._replica_lost(rep, rep.pool, exc)
                continue
            row = rows.get(rep.name) if rep.name else None
            rep.sync_state = row["sync_state"] if row else None
            rep.lag_bytes = row["lag_bytes"] if row is not None and row["lag_bytes"] is not None else behind
            rep.lag_s = row["lag_s"] if row is not None else None
            # A role without pg_monitor (the MCP server's) sees the standby's row with its state and lag NULL:
            # then the standby's own word decides, its replay position and the age of the last commit it replayed.
            hidden = row is not None and row["state"] is None
            if rep.lag_s is None and rep.lag_bytes == 0:
                rep.lag_s = 0.0  # idle and caught up: pg_stat_replication clears replay_lag
            elif rep.lag_s is None and hidden:
                rep.lag_s = since_replay
            if not standby:
                rep.skipped = "not a standby (promoted?)"
            elif rep.name and rows and row is None:
                rep.skipped = f"not streaming from this primary (no `{rep.name}` in pg_stat_replication)"
            elif row is not None and not hidden and row["state"] != "streaming":
                rep.skipped = f"WAL sender state {row['state']}"
            elif rep.lag_bytes is not None and rep.lag_bytes > self.max_lag_bytes:
                rep.skipped = f"lagging {rep.lag_bytes} bytes (> {self.max_lag_bytes})"
            elif rep.lag_s is not None and rep.lag_s > self.max_lag_s:
                rep.skipped = f"lagging {rep.lag_s:.1f} s (> {self.max_lag_s:g})"
            else:
                rep.skipped = None
        return [r.describe() for r in self.replicas]

    # --- routing -----------------------------------------------------------------------------------
    async def _primary_pool(self) -> asyncpg.Pool:
        if self.primary is None:
            # Down at start (or closed): try again, bounded by the connect timeout, so a server that
            # comes back is used without restarting the process.
            self.breaker.check()
            async with self._reconnect:
                if self.primary is None:
                    try:
                        await self.connect()
                    except StoreUnavailable as exc:
                        self.breaker.failure(exc)
                        raise
        return self.primary

    async def _probe(self) -> None:
        """The breaker's probe: one `SELECT 1` on the primary (a new pool if it had none)."""
        if self.primary is None:
            async with self._reconnect:
                if self.primary is None:
                    await self.connect()
        async with self.primary.acquire(timeout=self._timeout) as conn:
            await conn.fetchval("SELECT 1")

    def _pick_replica(self, exclude: set[int] | None = None) -> ReplicaState | None:
        """Round robin over the replicas in use (None: read on the primary)."""
        if not self.replicas:
            return None
        self._maybe_retry_replicas()
        self._maybe_check_lag()
        usable = [r for r in self.replicas if r.in_use and id(r) not in (exclude or set())]
        if not usable:
            return None
        return usable[next(self._rr) % len(usable)]

    async def _checkout(self, replica: bool) -> _Held:
        """A pooled connection: on a read replica in use when `replica` (another one or the primary when it cannot
        give one; that replica is retried in the background), else on the primary (through its breaker)."""
        primary = await self._primary_pool()
        tried: set[int] = set()
        rep = self._pick_replica() if replica else None
        pool, conn = primary, None
        while rep is not None:
            pool = rep.pool
            try:
                conn = await pool.acquire(timeout=self._timeout)
                break
            except _CONNECT_ERRORS as exc:
                self._replica_lost(rep, pool, exc)
                tried.add(id(rep))
                rep = self._pick_replica(tried)
                pool = primary
        on_primary = conn is None
        if on_primary:
            self.breaker.check()
            pool = await self._primary_pool()
            try:
                conn = await pool.acquire(timeout=self._timeout)
            except _CONNECT_ERRORS as exc:
                self.breaker.failure(exc)
                raise _connection_failed(exc) from exc
        return _Held(pool, conn, on_primary)

    async def _release(self, held: _Held) -> None:
        pool, conn = held.pool, held.conn
        if pool is self.primary or any(pool is r.pool for r in self.replicas):
            await pool.release(conn)
        else:  # the pool was dropped (replica lost) or closed meanwhile
            with contextlib.suppress(Exception):
                await pool.release(conn)

    @contextlib.asynccontextmanager
    async def connection(self, *, replica: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; `replica=True` routes to a read replica in use when there is one.

        When a replica cannot give a connection, the read goes to another one or the primary (and that
        replica is retried in the background); a failure once the connection is in use is raised as
        StoreUnavailable. Work on the primary passes its breaker: refused at once while it is open.
        Inside `calls(label)`, the session is recorded for the call (`call_sessions`).
        """
        call = _CALL.get() if tag_sessions() else None
        held = await self._checkout(replica)
        started = time.time()
        on_primary = held.on_primary
        try:
            yield held.conn
        except _CONNECT_ERRORS as exc:
            # Mid-use: the pool reconnects that slot on its next acquire, which falls back if it fails.
            if on_primary:
                self.breaker.failure(exc)
            raise _connection_failed(exc) from exc
        except Exception as exc:
            if on_primary:
                if is_outage(exc):
                    self.breaker.failure(exc)
                else:  # an answer about the statement: the server is there
                    self.breaker.success()
            raise
        else:
            if on_primary:
                self.breaker.success()
        finally:
            if call is not None:
                _record(call, held, started)
            await self._release(held)

    @contextlib.asynccontextmanager
    async def transaction(self, *, replica: bool = False,
                          isolation: str = "read_committed") -> AsyncIterator[asyncpg.Connection]:
        """One transaction: committed when the block ends, rolled back on any error."""
        async with self.connection(replica=replica) as conn, conn.transaction(
                isolation=isolation, readonly=replica or self._read_only):
            yield conn

    async def health(self) -> dict[str, object]:
        """Round trip to the primary; each replica's state and its lag from pg_stat_replication."""
        out: dict[str, object] = {}
        async with self.connection() as conn:
            out["primary"] = await conn.fetchval("SELECT 1") == 1
        if self.replicas:
            try:
                out["replicas"] = await self.check_lag()
            except (*_CONNECT_ERRORS, asyncpg.PostgresError) as exc:
                out["replicas"] = [r.describe() for r in self.replicas]
                out["lag_error"] = type(exc).__name__
            in_use = [r for r in self.replicas if r.in_use]
            out["replica"] = bool(in_use)
            out["replica_lag_s"] = max((r.lag_s or 0.0 for r in in_use), default=None)
            out["replica_lag_bytes"] = max((r.lag_bytes or 0 for r in in_use), default=None)
            if not in_use:
                out["replica_error"] = self.replica_error or "not connected yet"
        else:
            out["replica"] = False
        return out
