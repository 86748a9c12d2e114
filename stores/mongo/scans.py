"""Whole-collection reads of the credit store for the search indexers.

The repositories in `stores.mongo.credit` are per-user, scoped APIs; an indexer needs a stable full scan
ordered by `_id`, and the documents named by change events. These reads are unscoped on purpose: they feed
indexes that are searched under a scope, and no tool reaches them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from stores.mongo.client import MongoStore
from stores.mongo.credit import as_db, guard

Raw = dict[str, Any]


class CreditStoreScan:
    """Full scans and id lookups over the credit store's collections (raw documents)."""

    def __init__(self, store: MongoStore | AsyncDatabase) -> None:
        self.db = as_db(store)

    async def pages(self, collection: str, *, after: Any = None, batch: int = 200,
                    exclude: Iterable[Any] = ()) -> AsyncIterator[list[Raw]]:
        """Documents with `_id` > `after` in `_id` order, `batch` at a time, without the ids in `exclude`."""
        coll = self.db[collection]
        skip = list(exclude)
        last = after
        while True:
            flt: Raw = {"_id": {"$gt": last}} if last is not None else {}
            if skip:
                flt = {"_id": {**flt.get("_id", {}), "$nin": skip}}
            async with guard(f"scan {collection}"):
                rows = await coll.find(flt).sort("_id", 1).limit(batch).to_list(batch)
            if not rows:
                return
            yield rows
            last = rows[-1]["_id"]

    async def distinct_values(self, collection: str, field: str) -> set[str]:
        """The distinct non-empty values of `field` (as strings)."""
        async with guard(f"distinct {collection}.{field}"):
            values = await self.db[collection].distinct(field)
        return {str(v) for v in values if v}

    async def superseded(self, collection: str) -> set[str]:
        """Ids of versions a newer version `supersedes` (versioned collections)."""
        return await self.distinct_values(collection, "supersedes")

    async def by_ids(self, collection: str, ids: Iterable[str]) -> dict[str, Raw]:
        """The documents with these ids that exist, by id."""
        wanted = sorted(set(ids))
        async with guard(f"read {collection}"):
            return {str(r["_id"]): r async for r in self.db[collection].find({"_id": {"$in": wanted}})}

    async def superseded_among(self, collection: str, ids: Iterable[str]) -> set[str]:
        """Which of these ids a newer version supersedes."""
        wanted = sorted(set(ids))
        async with guard(f"read {collection}"):
            return {str(r["supersedes"]) async for r in self.db[collection].find({"supersedes": {"$in": wanted}},
                                                                                {"supersedes": 1})}

    async def report_subject_names(self, report_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Each credit report's subject name (a known name for redaction), by report id."""
        wanted = sorted(set(report_ids))
        out: dict[str, tuple[str, ...]] = {}
        async with guard("read credit_reports"):
            async for r in self.db["credit_reports"].find({"_id": {"$in": wanted}}, {"subject.full_name": 1}):
                name = (r.get("subject") or {}).get("full_name")
                out[str(r["_id"])] = (name,) if name else ()
        return out
