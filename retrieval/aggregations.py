"""Analytics over the structured search indexes: volume by corridor, day and currency; dispute outcomes."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from retrieval.errors import IndexNotBuilt
from stores.errors import NotFound
from stores.search.catalog import DISPUTES, TRANSACTIONS
from stores.search.client import SearchStore
from stores.search.documents import SearchIndex


async def _aggregate(search: SearchStore, name: str, body: dict[str, Any]) -> dict[str, Any]:
    index = SearchIndex(search, name)
    try:
        return await index.search(body)
    except NotFound as exc:
        raise IndexNotBuilt(index.alias, f"kredete search sync {name}") from exc


async def volume_by_corridor_per_day(search: SearchStore, date_from: datetime, date_to: datetime, *,
                                     statuses: tuple[str, ...] = ("completed",)) -> list[dict[str, Any]]:
    """Per day, corridor and source currency: transaction count and summed amount (minor units of that
    currency; amounts in different currencies are never added together)."""
    body = {"size": 0, "query": {"bool": {"filter": [
        {"range": {"created_at": {"gte": date_from.isoformat(), "lt": date_to.isoformat()}}},
        {"terms": {"status": list(statuses)}}, {"exists": {"field": "corridor"}}]}},
        "aggs": {"day": {"date_histogram": {"field": "created_at", "calendar_interval": "day"},
                         "aggs": {"corridor": {"terms": {"field": "corridor", "size": 100},
                                               "aggs": {"currency": {"terms": {"field": "currency", "size": 20},
                                                                     "aggs": {"amount": {"sum": {
                                                                         "field": "amount_minor"}}}}}}}}}}
    res = await _aggregate(search, TRANSACTIONS, body)
    out = []
    for day in res["aggregations"]["day"]["buckets"]:
        for c in day["corridor"]["buckets"]:
            for cur in c["currency"]["buckets"]:
                out.append({"day": day["key_as_string"][:10], "corridor": c["key"], "currency": cur["key"],
                            "count": cur["doc_count"], "amount_minor": int(cur["amount"]["value"])})
    return out


async def dispute_outcomes(search: SearchStore, *, bureau: str | None = None) -> dict[str, Any]:
    """Counts by outcome and status, and average days open per outcome."""
    flt = [{"term": {"bureau": bureau}}] if bureau else []
    body = {"size": 0, "query": {"bool": {"filter": flt}}, "aggs": {
        "outcome": {"terms": {"field": "outcome", "size": 20}, "aggs": {"days": {"avg": {"field": "days_open"}}}},
        "status": {"terms": {"field": "status", "size": 20}}}}
    res = await _aggregate(search, DISPUTES, body)
    aggs = res["aggregations"]
    return {"total": res["hits"]["total"]["value"],
            "by_outcome": {b["key"]: {"count": b["doc_count"], "avg_days_open": round(b["days"]["value"] or 0, 1)}
                           for b in aggs["outcome"]["buckets"]},
            "by_status": dict(Counter({b["key"]: b["doc_count"] for b in aggs["status"]["buckets"]}))}
