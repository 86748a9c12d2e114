"""Connection-pool gauges of this process's store adapters, read at scrape time (default registry).

Per pool (label `pool`; labels never carry passwords or hosts' data):

* `kredete_pool_connections`: connections open now;
* `kredete_pool_max_connections`: the most the pool will open;
* `kredete_pool_in_use_connections`: connections checked out by a caller now;
* `kredete_pool_waiting_requests`: callers blocked waiting for a connection now.

asyncpg (per PostgresStore: `postgres:<role>:primary`, `postgres:<role>:replica:<cluster_name>`)
reads the pool's own counters and its queue of waiters; PyMongo async (`mongo:<host:port>`) counts its
connection-pool events (its pool has no public counters); redis (`redis:<user>`) reads redis-py's pool, which
does not queue (a full pool raises), so its waiting gauge is 0 by construction.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo import monitoring

_LABELS = ["store", "pool"]


def _user(url: str | None) -> str:
    try:
        return urlsplit(url or "").username or "default"
    except ValueError:
        return "default"


class _Stats:
    __slots__ = ("in_use", "max", "size", "waiting")

    def __init__(self, size: int, max_: int, in_use: int, waiting: int) -> None:
        self.size, self.max, self.in_use, self.waiting = size, max_, in_use, waiting


def _asyncpg_stats(pool: Any) -> _Stats | None:
    try:
        size, idle, max_ = pool.get_size(), pool.get_idle_size(), pool.get_max_size()
    except Exception:  # closed or closing
        return None
    # asyncpg queues waiters on its LifoQueue of connection holders (no public counter).
    getters = getattr(getattr(pool, "_queue", None), "_getters", ()) or ()
    waiting = sum(1 for g in getters if not g.done())
    return _Stats(size=size, max_=max_, in_use=max(0, size - idle), waiting=waiting)


def _redis_pools(client: Any) -> Iterator[tuple[str, _Stats]]:
    """A standalone client's one pool, or one per node of a cluster client (suffix `:<host:port>`)."""
    if client is None:
        return
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        in_use = len(getattr(pool, "_in_use_connections", ()))
        idle = len(getattr(pool, "_available_connections", ()))
        yield "", _Stats(size=in_use + idle, max_=int(pool.max_connections), in_use=in_use, waiting=0)
        return
    with contextlib.suppress(Exception):  # a cluster client: each ClusterNode keeps its own connections
        for node in client.get_nodes():
            opened = len(getattr(node, "_connections", ()))
            free = len(getattr(node, "_free", ()))
            yield f":{node.host}:{node.port}", _Stats(size=opened, max_=int(getattr(node, "max_connections", 0)),
                                                      in_use=max(0, opened - free), waiting=0)


class MongoPoolListener(monitoring.ConnectionPoolListener):
    """Counts pymongo's pool events per server address (one pool per address and client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open: dict[str, int] = defaultdict(int)
        self.max: dict[str, int] = {}
        self.in_use: dict[str, int] = defaultdict(int)
        self.waiting: dict[str, int] = defaultdict(int)

    @staticmethod
    def _key(event: Any) -> str:
        host, port = event.address
        return f"{host}:{port}"

    def _add(self, table: dict[str, int], event: Any, n: int) -> None:
        with self._lock:
            table[self._key(event)] += n

    def pool_created(self, event: Any) -> None:
        with self._lock:
            self.max[self._key(event)] = int(event.options.get("maxPoolSize", 100) or 100)

    def pool_ready(self, event: Any) -> None: ...
    def pool_cleared(self, event: Any) -> None: ...
    def pool_closed(self, event: Any) -> None: ...
    def connection_ready(self, event: Any) -> None: ...

    def connection_created(self, event: Any) -> None:
        self._add(self.open, event, 1)

    def connection_closed(self, event: Any) -> None:
        self._add(self.open, event, -1)

    def connection_check_out_started(self, event: Any) -> None:
        self._add(self.waiting, event, 1)

    def connection_check_out_failed(self, event: Any) -> None:
        self._add(self.waiting, event, -1)

    def connection_checked_out(self, event: Any) -> None:
        with self._lock:
            key = self._key(event)
            self.waiting[key] -= 1
            self.in_use[key] += 1

    def connection_checked_in(self, event: Any) -> None:
        self._add(self.in_use, event, -1)

    def snapshot(self) -> Iterator[tuple[str, _Stats]]:
        with self._lock:
            for key in sorted(set(self.open) | set(self.max)):
                yield key, _Stats(size=max(0, self.open[key]), max_=self.max.get(key, 100),
                                  in_use=max(0, self.in_use[key]), waiting=max(0, self.waiting[key]))


#: Handed to every MongoClient the adapter makes (`event_listeners=`).
MONGO_POOLS = MongoPoolListener()


class PoolCollector(Collector):
    """Reads the tracked adapters' pools when Prometheus scrapes."""

    def __init__(self) -> None:
        self._postgres: weakref.WeakSet[Any] = weakref.WeakSet()
        self._redis: weakref.WeakSet[Any] = weakref.WeakSet()

    def track_postgres(self, store: Any) -> None:
        self._postgres.add(store)

    def track_redis(self, store: Any) -> None:
        self._redis.add(store)

    def _pools(self) -> Iterator[tuple[str, str, _Stats]]:
        seen: dict[tuple[str, str], _Stats] = {}
        for store in list(self._postgres):
            user = _user(store._primary_url)
            pools = [("primary", store.primary)]
            for i, rep in enumerate(getattr(store, "replicas", ())):
                pools.append((f"replica:{rep.name or i + 1}", rep.pool))
            for where, pool in pools:
                stats = _asyncpg_stats(pool) if pool is not None else None
                if stats is not None:
                    _add(seen, "postgres", f"postgres:{user}:{where}", stats)
        for key, stats in MONGO_POOLS.snapshot():
            _add(seen, "mongo", f"mongo:{key}", stats)
        for store in list(self._redis):
            for where, stats in _redis_pools(store.client):
                _add(seen, "redis", f"redis:{_user(store._url)}{where}", stats)
        for (store, pool), stats in sorted(seen.items()):
            yield store, pool, stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "size": GaugeMetricFamily("kredete_pool_connections", "Connections the pool has open now", labels=_LABELS),
            "max": GaugeMetricFamily("kredete_pool_max_connections", "Most connections the pool will open",
                                     labels=_LABELS),
            "in_use": GaugeMetricFamily("kredete_pool_in_use_connections", "Connections checked out by a caller now",
                                        labels=_LABELS),
            "waiting": GaugeMetricFamily("kredete_pool_waiting_requests",
                                         "Callers blocked waiting for a connection now", labels=_LABELS),
        }
        for store, pool, stats in self._pools():
            for attr, family in families.items():
                family.add_metric([store, pool], getattr(stats, attr))
        yield from families.values()

    def describe(self) -> list:
        return []


def _add(seen: dict[tuple[str, str], _Stats], store: str, pool: str, stats: _Stats) -> None:
    """A second pool of the same role and server in one process is `#2`, and so on: each pool saturates alone."""
    label, n = pool, 1
    while (store, label) in seen:
        n += 1
        label = f"{pool}#{n}"
    seen[(store, label)] = stats


POOLS = PoolCollector()
REGISTRY.register(POOLS)


def track_postgres(store: Any) -> None:
    POOLS.track_postgres(store)


def track_redis(store: Any) -> None:
    POOLS.track_redis(store)
