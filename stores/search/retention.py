"""Time-based search indexes: roll the write index over, delete rolled-over indices past retention.

An index family written through its alias (`<prefix>-<family>`, write index `-NNNNNN`) is rolled over with
OpenSearch's rollover API once its write index is older than `rollover_days`: a new generation takes the writes,
the alias still reads them all. A rolled-over index whose newest document (`time_field`) is older than the
retention is deleted whole (no delete-by-query over a live index). The local node has no Index State
Management plugin; `kredete retention run` does what an ISM policy (rollover + delete states) would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stores.errors import NotFound
from stores.search.client import SearchStore


async def generations(search: SearchStore, family: str) -> list[dict[str, Any]]:
    """The indices behind the family's alias: name, write flag, creation time, documents, newest `time_field`."""
    alias = search.index_name(family)
    try:
        aliases = await search.call(search.os.indices.get_alias(name=alias))
    except NotFound:
        return []
    settings = await search.call(search.os.indices.get_settings(index=",".join(aliases), name="index.creation_date"))
    out = []
    for index, info in sorted(aliases.items()):
        created_ms = int(settings[index]["settings"]["index"]["creation_date"])
        out.append({"index": index, "write": bool(info["aliases"][alias].get("is_write_index")),
                    "created": datetime.fromtimestamp(created_ms / 1000, UTC)})
    return out


async def newest(search: SearchStore, index: str, time_field: str) -> tuple[int, datetime | None]:
    await search.call(search.os.indices.refresh(index=index))
    res = await search.call(search.os.search(index=index, body={
        "size": 0, "track_total_hits": True, "aggs": {"newest": {"max": {"field": time_field}}}}))
    value = res["aggregations"]["newest"].get("value")
    return int(res["hits"]["total"]["value"]), (datetime.fromtimestamp(value / 1000, UTC) if value else None)


async def plan(search: SearchStore, family: str, time_field: str, *, rollover_days: int, retention_days: int,
               now: datetime | None = None) -> dict[str, Any]:
    """What a run would do: roll over (the write index is older than `rollover_days`) and which rolled-over
    indices it would delete (their newest document is older than `retention_days`)."""
    now = now or datetime.now(UTC)
    gens = await generations(search, family)
    write = next((g for g in gens if g["write"]), None)
    out: dict[str, Any] = {"indices": len(gens), "rollover": bool(write and now - write["created"] >=
                                                                  timedelta(days=rollover_days)),
                           "delete": [], "delete_docs": 0}
    for g in gens:
        if g["write"]:
            continue
        docs, last = await newest(search, g["index"], time_field)
        if last is None or last < now - timedelta(days=retention_days):
            out["delete"].append(g["index"])
            out["delete_docs"] += docs
    return out


async def run(search: SearchStore, family: str, time_field: str, *, rollover_days: int, retention_days: int,
              now: datetime | None = None) -> dict[str, Any]:
    """Do what `plan` says: rollover first (so the old write index can age out), then delete."""
    todo = await plan(search, family, time_field, rollover_days=rollover_days, retention_days=retention_days,
                      now=now)
    if todo["rollover"]:
        res = await search.call(search.os.indices.rollover(alias=search.index_name(family)))
        todo["rolled_over_to"] = res.get("new_index")
    for index in todo["delete"]:
        await search.call(search.os.indices.delete(index=index))
    return todo
