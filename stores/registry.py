"""Build and connect every adapter from settings; one place that knows which URL goes where."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal

from config.settings import Settings, resolve
from stores.cache import CacheStore
from stores.mongo import MongoStore
from stores.objects import ObjectStore
from stores.postgres import PostgresStore
from stores.search import SearchStore

log = logging.getLogger("kredete.stores")

StoreName = Literal["postgres", "audit", "mongo", "cache", "search", "objects"]
EVERY_STORE: tuple[StoreName, ...] = ("postgres", "mongo", "cache", "search", "objects")
#: What the MCP server connects: Postgres as the SELECT-only agent role and as the append-only audit role,
#: the restricted Redis user, the credit store and search.
AGENT_STORES: tuple[StoreName, ...] = ("postgres", "audit", "mongo", "cache", "search")


def _s(secret) -> str | None:
    return secret.get_secret_value() if secret is not None else None


@dataclass
class Stores:
    """The adapters a process uses; any may be None when not requested.

    `audit` is a second Postgres adapter as the append-only log role (the MCP server's audit writer).
    """

    postgres: PostgresStore | None = None
    mongo: MongoStore | None = None
    cache: CacheStore | None = None
    search: SearchStore | None = None
    objects: ObjectStore | None = None
    audit: PostgresStore | None = None
    settings: Settings = field(default_factory=resolve)

    def _all(self) -> list:
        return [x for x in (self.objects, self.search, self.cache, self.mongo, self.audit, self.postgres) if x]

    def breakers(self) -> dict[str, dict[str, object]]:
        """The circuit breaker of each connected adapter (state, consecutive failures, seconds open)."""
        named = {"postgres": self.postgres, "postgres_audit": self.audit, "mongo": self.mongo, "redis": self.cache,
                 "opensearch": self.search}
        return {k: v.breaker.describe() for k, v in named.items() if v is not None and hasattr(v, "breaker")}

    async def close(self) -> None:
        for store in self._all():
            await store.close()


def build_postgres(s: Settings, *, role: str = "service") -> PostgresStore:
    """`service`: full application role; `agent`: SELECT-only role; `log`: insert-only role."""
    urls = {
        "service": (s.postgres_url, s.postgres_replica_url),
        "agent": (s.postgres_agent_url, s.postgres_agent_replica_url),
        "log": (s.postgres_log_url, None),
    }[role]
    # Each role's adapter has its own breaker, named so metrics and /healthz tell them apart.
    name = {"service": "postgres", "agent": "postgres", "log": "postgres_audit"}[role]
    return PostgresStore(_s(urls[0]), _s(urls[1]), timeout=s.connect_timeout_s,
                         statement_timeout_ms=s.statement_timeout_ms, read_only=(role == "agent"),
                         max_lag_bytes=s.postgres_replica_max_lag_bytes, max_lag_s=s.postgres_replica_max_lag_s,
                         name=name, light_reset=role in ("agent", "log"))  # no session state: no reset trip


def build(which: tuple[StoreName, ...] = EVERY_STORE, *, settings: Settings | None = None,
          postgres_role: str = "service", redis_role: str = "service") -> Stores:
    """The named adapters, not yet connected (`audit` is Postgres as the log role)."""
    s = resolve(settings)
    stores = Stores(settings=s)
    if "postgres" in which:
        stores.postgres = build_postgres(s, role=postgres_role)
    if "audit" in which:
        stores.audit = build_postgres(s, role="log")
    if "mongo" in which:
        stores.mongo = MongoStore(_s(s.mongo_url), s.mongo_db, timeout=s.connect_timeout_s,
                                  backend_url=_s(s.ferretdb_reader_url))
    if "cache" in which:
        url = s.redis_agent_url if redis_role == "agent" else s.redis_url
        stores.cache = CacheStore(_s(url), timeout=s.connect_timeout_s)
    if "search" in which:
        stores.search = SearchStore(_s(s.opensearch_url), prefix=s.index_prefix)
    if "objects" in which:
        stores.objects = ObjectStore(s.s3_url, _s(s.s3_access_key), _s(s.s3_secret_key), region=s.s3_region,
                                     timeout=s.connect_timeout_s, verify=s.s3_ca_file)
    return stores


async def connect(which: tuple[StoreName, ...] = EVERY_STORE, *, settings: Settings | None = None,
                  postgres_role: str = "service", redis_role: str = "service", required: bool = True) -> Stores:
    """Connect the named adapters concurrently.

    `required=True` (commands, tests): on any failure close what was opened and re-raise. `required=False`
    (a server): a store that is down at start is logged and kept; calls that need it fail with a clear
    `StoreUnavailable` until it is back, and the others keep working.
    """
    stores = build(which, settings=settings, postgres_role=postgres_role, redis_role=redis_role)
    pending = stores._all()
    results = await asyncio.gather(*(x.connect() for x in pending), return_exceptions=True)
    errors = [(x, r) for x, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
    if errors and required:
        await stores.close()
        raise errors[0][1]
    for store, exc in errors:
        log.warning("store %s unavailable at start: %s", type(store).__name__, exc)
    return stores


async def connect_agent(settings: Settings | None = None) -> Stores:
    """The MCP server's adapters (`AGENT_STORES`, least-privilege roles), tolerant of a store that is down."""
    return await connect(AGENT_STORES, settings=settings, postgres_role="agent", redis_role="agent",
                         required=False)
