"""Capacity and cost: what each store holds now, per user, projected at a monthly growth, and what it costs.

Sizes are measured on the configured stores (tables with their partitions, indexes and TOAST; collections;
search indexes with their replicas; buckets with every version; Redis memory). The projection compounds a
monthly growth rate (default 15 %, the spec's ~15 % MoM) over N months; the month a store crosses its limit
is the first projected month above it. Costs come from monitoring/prices.yml (instances + storage per GB).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import yaml
from pydantic import BaseModel, Field

from config.monitoring import MonitoringSettings
from config.paths import REPO_ROOT

PRICES = REPO_ROOT / "monitoring" / "prices.yml"
GB = 1e9


class Item(BaseModel):
    """One table, collection, index, bucket or keyspace."""

    name: str
    bytes: int
    rows: int | None = None
    index_bytes: int | None = None


class StoreUsage(BaseModel):
    store: str
    kind: str  # "rows" / "documents" / "objects" / "keys"
    items: list[Item] = Field(default_factory=list)
    bytes: int = 0
    rows: int = 0
    error: str = ""


class Price(BaseModel):
    item: str
    per_hour: float | None = None
    per_gb_month: float | None = None
    count: int = 1
    copies: int = 1
    included_gb: float = 0
    source: str
    date: str
    checked: str
    note: str = ""


class StorePrices(BaseModel):
    label: str
    instances: list[Price] = Field(default_factory=list)
    storage: list[Price] = Field(default_factory=list)


class PriceTable(BaseModel):
    currency: str
    region: str
    hours_per_month: float
    stores: dict[str, StorePrices]

    @classmethod
    def load(cls) -> PriceTable:
        return cls.model_validate(yaml.safe_load(PRICES.read_text()))

    def monthly(self, store: str, data_bytes: float) -> dict[str, float]:
        """Instances and storage per month for this much data (storage times the copies kept)."""
        p = self.stores.get(store)
        if p is None:
            return {"instances": 0.0, "storage": 0.0, "total": 0.0}
        inst = sum((i.per_hour or 0) * i.count * self.hours_per_month for i in p.instances)
        gb = data_bytes / GB
        storage = sum((s.per_gb_month or 0) * s.copies * max(0.0, gb - s.included_gb) for s in p.storage)
        return {"instances": round(inst, 2), "storage": round(storage, 2), "total": round(inst + storage, 2)}


# --- measuring -------------------------------------------------------------------------------------------------
async def measure(settings: Any) -> tuple[list[StoreUsage], int]:
    """Usage of every store the settings point at, and the number of users; a store that cannot be read is
    reported with its error (and counted as unknown, not as empty)."""
    from stores.registry import connect

    out: list[StoreUsage] = []
    users = 0

    async def one(name: str, which: str, fn: Any) -> None:
        try:
            stores = await connect((which,), settings=settings)
        except Exception as exc:
            out.append(StoreUsage(store=name, kind="-", error=f"unreachable: {str(exc).splitlines()[0][:160]}"))
            return
        try:
            out.append(await fn(getattr(stores, which)))
        except Exception as exc:
            out.append(StoreUsage(store=name, kind="-", error=str(exc).splitlines()[0][:160]))
        finally:
            await stores.close()

    async def postgres(pg: Any) -> StoreUsage:
        nonlocal users
        from stores.monitoring.postgres import PostgresStats

        stats = PostgresStats(pg)
        users = await stats.users()
        tables = await stats.table_sizes()
        total = await stats.database_bytes()
        return StoreUsage(store="postgres", kind="rows", bytes=total, rows=sum(t.rows for t in tables),
                          items=[Item(name=t.table, bytes=t.bytes, rows=t.rows, index_bytes=t.index_bytes)
                                 for t in tables])

    async def mongo(m: Any) -> StoreUsage:
        from stores.monitoring.mongo import MongoStats

        cols = await MongoStats(m).collection_sizes()
        return StoreUsage(store="mongo", kind="documents", bytes=sum(c.bytes + c.index_bytes for c in cols),
                          rows=sum(c.documents for c in cols),
                          items=[Item(name=c.collection, bytes=c.bytes + c.index_bytes, rows=c.documents,
                                      index_bytes=c.index_bytes) for c in cols])

    async def search(s: Any) -> StoreUsage:
        from stores.monitoring.search import SearchStats
        from stores.search.catalog import CHUNKS, static_specs

        stats = SearchStats(s)
        # This dataset's indexes only: the aliases of its index families and the generations behind them.
        names = await stats.concrete([s.index_name(n) for n in (CHUNKS, *static_specs())])
        mine = [i for i in (await stats.cluster()).indices if i.index in names]
        return StoreUsage(store="opensearch", kind="documents", bytes=sum(i.bytes for i in mine),
                          rows=sum(i.documents for i in mine),
                          items=[Item(name=i.index, bytes=i.bytes, rows=i.documents) for i in mine])

    async def objects(o: Any) -> StoreUsage:
        from stores.monitoring.objects import ObjectStats
        from stores.objects.buckets import specs_for

        buckets = await ObjectStats(o).buckets({b.name for b in specs_for(settings.s3_bucket_prefix)})
        return StoreUsage(store="s3", kind="objects", bytes=sum(b.bytes for b in buckets),
                          rows=sum(b.objects for b in buckets),
                          items=[Item(name=b.bucket, bytes=b.bytes, rows=b.objects) for b in buckets])

    async def cache(c: Any) -> StoreUsage:
        from stores.monitoring.cache import CacheStats

        u = await CacheStats(c).usage()
        return StoreUsage(store="redis", kind="keys", bytes=u.used_memory_bytes, rows=u.keys,
                          items=[Item(name="memory (used_memory)", bytes=u.used_memory_bytes, rows=u.keys)])

    await one("postgres", "postgres", postgres)
    await asyncio.gather(one("mongo", "mongo", mongo), one("opensearch", "search", search),
                         one("s3", "objects", objects), one("redis", "cache", cache))
    order = ["postgres", "mongo", "opensearch", "redis", "s3"]
    return sorted(out, key=lambda s: order.index(s.store)), users


# --- projecting ----------------------------------------------------------------------------------------------
def crossing_month(now_bytes: float, limit_bytes: float, growth: float) -> int | None:
    """First month (1-based) whose projected size exceeds the limit; 0 when already over; None if never
    (nothing stored, or no growth)."""
    if now_bytes > limit_bytes:
        return 0
    if now_bytes <= 0 or growth <= 0:
        return None
    return max(1, math.floor(math.log(limit_bytes / now_bytes) / math.log1p(growth)) + 1)


def limits(monitor: MonitoringSettings) -> dict[str, float]:
    return {"postgres": monitor.capacity_limit_postgres_gb * GB, "mongo": monitor.capacity_limit_mongo_gb * GB,
            "opensearch": monitor.capacity_limit_opensearch_gb * GB, "redis": monitor.capacity_limit_redis_gb * GB}


def build_report(usage: list[StoreUsage], users: int, monitor: MonitoringSettings, prices: PriceTable,
                 *, growth: float | None = None, months: int | None = None) -> dict[str, Any]:
    growth = monitor.capacity_growth_monthly if growth is None else growth
    months = monitor.capacity_months if months is None else months
    lim = limits(monitor)
    known = [s for s in usage if not s.error]
    # Empty: no user and no row in any store of record (a migrated schema still has bytes: catalog pages, empty
    # indexes); Redis is a cache shared by every dataset, its keys do not make data.
    empty = users == 0 and all(s.rows == 0 for s in known if s.store != "redis")
    stores: list[dict[str, Any]] = []
    for s in usage:
        series = [s.bytes * (1 + growth) ** m for m in range(months + 1)] if not s.error else []
        limit = lim.get(s.store)
        cross = crossing_month(s.bytes, limit, growth) if (limit and not s.error) else None
        stores.append({
            "store": s.store, "kind": s.kind, "bytes": s.bytes, "rows": s.rows, "error": s.error,
            "per_user_bytes": (s.bytes / users) if users and not s.error else None,
            "per_user_rows": (s.rows / users) if users and not s.error else None,
            "items": [i.model_dump() | ({"per_user_bytes": i.bytes / users, "per_user_rows":
                                          (i.rows / users if i.rows is not None else None)} if users else {})
                      for i in s.items],
            "limit_bytes": limit,
            "crosses_limit_month": cross if (cross is not None and cross <= months) else None,
            "crosses_limit_month_beyond_horizon": cross if (cross is not None and cross > months) else None,
            "projection_bytes": series,
            "cost_now": prices.monthly(s.store, s.bytes) if not s.error else None,
            "cost_at_horizon": prices.monthly(s.store, series[-1]) if series else None,
        })
    total_now = sum(x["cost_now"]["total"] for x in stores if x["cost_now"])
    total_end = sum(x["cost_at_horizon"]["total"] for x in stores if x["cost_at_horizon"])
    first = min(((x["crosses_limit_month"], x["store"]) for x in stores if x["crosses_limit_month"] is not None),
                default=None)
    return {
        "growth_monthly": growth, "months": months, "users": users, "empty": empty,
        "currency": prices.currency, "region": prices.region,
        "headline": _headline(empty, users, stores, growth, months, first, total_now, total_end, prices.currency),
        "stores": stores, "cost_total_now": round(total_now, 2), "cost_total_at_horizon": round(total_end, 2),
        "prices": prices.model_dump(),
    }


def _headline(empty: bool, users: int, stores: list[dict[str, Any]], growth: float, months: int,
              first: tuple[int, str] | None, now: float, end: float, currency: str) -> str:
    if empty:
        return ("The database is empty (no users, no rows): nothing to project; costs below are the fixed "
                "instance costs only.")
    data = sum(s["bytes"] for s in stores if not s["error"])
    parts = [f"{data / GB:.2f} GB across the stores for {users:,} users"
             + (f" ({data / users / 1e6:.2f} MB per user)" if users else " (no users: per-user figures n/a)")]
    if first:
        parts.append(f"at {growth:.0%} a month the first limit crossed is {first[1]} in month {first[0]}")
    else:
        parts.append(f"at {growth:.0%} a month no store crosses its limit within {months} months")
    parts.append(f"monthly cost {currency} {now:,.0f} now, {currency} {end:,.0f} in month {months}")
    return "; ".join(parts) + "."


def plot(report: dict[str, Any], path: Any) -> None:
    """Projected size per store (log scale) with each store's limit, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    months = list(range(report["months"] + 1))
    for s in report["stores"]:
        if s["error"] or not any(s["projection_bytes"]):
            continue
        line = ax.plot(months, [b / GB for b in s["projection_bytes"]], label=s["store"])[0]
        if s["limit_bytes"]:
            ax.axhline(s["limit_bytes"] / GB, color=line.get_color(), linestyle="--", linewidth=0.8)
            if s["crosses_limit_month"] is not None:
                ax.axvline(s["crosses_limit_month"], color=line.get_color(), linestyle=":", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("month")
    ax.set_ylabel("GB (log scale); dashed: limit, dotted: month it is crossed")
    ax.set_title(f"Projected data per store at {report['growth_monthly']:.0%} monthly growth")
    if ax.lines:
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "empty database: nothing to project", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
