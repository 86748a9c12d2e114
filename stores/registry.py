"""Build and connect every adapter from settings; one place that knows which URL goes where."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from config.settings import Settings, resolve
from stores.cache import CacheStore
from stores.mongo import MongoStore
from stores.objects import ObjectStore
from stores.postgres import PostgresStore
from stores.search import SearchStore


def _s(secret) -> str | None:
    return secret.get_secret_value() if secret is not None else None


@dataclass
class Stores:
    """The connected adapters a process uses; any may be None when not requested."""

    postgres: PostgresStore | None = None
    mongo: MongoStore | None = None
    cache: CacheStore | None = None
    search: SearchStore | None = None
    objects: ObjectStore | None = None
    settings: Settings = field(default_factory=resolve)

    async def close(self) -> None:
        for store in (self.objects, self.search, self.cache, self.mongo, self.postgres):
            if store is not None:
                await store.close()


def build_postgres(s: Settings, *, role: str = "service") -> PostgresStore:
    """`service`: full application role; `agent`: SELECT-only role; `log`: insert-only role."""
    urls = {
        "service": (s.postgres_url, s.postgres_replica_url),
        "agent": (s.postgres_agent_url, s.postgres_agent_replica_url),
        "log": (s.postgres_log_url, None),
    }[role]
    return PostgresStore(_s(urls[0]), _s(urls[1]), timeout=s.connect_timeout_s,
                         statement_timeout_ms=s.statement_timeout_ms, read_only=(role == "agent"),
                         max_lag_bytes=s.postgres_replica_max_lag_bytes, max_lag_s=s.postgres_replica_max_lag_s)


async def connect(which: tuple[str, ...] = ("postgres", "mongo", "cache", "search", "objects"), *,
                  settings: Settings | None = None, postgres_role: str = "service",
                  redis_role: str = "service") -> Stores:
    """Connect the named adapters concurrently; on any failure close what was opened and re-raise."""
    s = resolve(settings)
    stores = Stores(settings=s)
    if "postgres" in which:
        stores.postgres = build_postgres(s, role=postgres_role)
    if "mongo" in which:
        stores.mongo = MongoStore(_s(s.mongo_url), s.mongo_db, timeout=s.connect_timeout_s)
    if "cache" in which:
        url = s.redis_agent_url if redis_role == "agent" else s.redis_url
        stores.cache = CacheStore(_s(url), timeout=s.connect_timeout_s)
    if "search" in which:
        stores.search = SearchStore(_s(s.opensearch_url), prefix=s.index_prefix)
    if "objects" in which:
        stores.objects = ObjectStore(s.s3_url, _s(s.s3_access_key), _s(s.s3_secret_key), region=s.s3_region,
                                     timeout=s.connect_timeout_s, verify=s.s3_ca_file)
    pending = [x for x in (stores.postgres, stores.mongo, stores.cache, stores.search, stores.objects) if x]
    results = await asyncio.gather(*(x.connect() for x in pending), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await stores.close()
        raise errors[0]
    return stores
