"""Embedding metadata (`embeddings`): one record per chunk indexed for retrieval, the vector itself in
OpenSearch under `vector_id` (the chunk id). Written by ingestion, service-side, never by agent tools.

Record ids are derived from (model, chunk id), so re-ingesting a chunk replaces its record and
at-least-once ingestion never duplicates one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from stores.mongo.client import MongoStore
from stores.mongo.collections import EMBEDDINGS
from stores.mongo.credit import as_db, guard
from stores.mongo.documents import EmbeddingRecord
from stores.mongo.safety import eq_filter

_BATCH = 500
_PARALLEL = 8  # concurrent deletes (each one indexed)


def record_id(model: str, vector_id: str) -> str:
    return hashlib.sha256(f"{model}\x00{vector_id}".encode()).hexdigest()


class EmbeddingRepository:
    """Upserts, prunes and counts embedding records of one model."""

    def __init__(self, store: MongoStore | AsyncDatabase) -> None:
        self.db = as_db(store)
        self.coll = self.db[EMBEDDINGS]

    async def record(self, records: Sequence[EmbeddingRecord]) -> int:
        """Upsert `records` (validated models); returns how many were written."""
        ops = []
        for r in records:
            doc = r.model_dump(by_alias=True)
            doc["_id"] = record_id(r.model, r.vector_id)
            ops.append(ReplaceOne({"_id": {"$eq": doc["_id"]}}, doc, upsert=True))
        for i in range(0, len(ops), _BATCH):
            async with guard("write embeddings"):
                await self.coll.bulk_write(ops[i:i + _BATCH], ordered=False)
        return len(ops)

    async def prune(self, kept: Iterable[tuple[str, str, int]], *, model: str) -> int:
        """For each (source_type, source_id, n_chunks): drop records of chunk index >= n_chunks."""
        clauses = [{**eq_filter("source_type", t), **eq_filter("source_id", s), "chunk_index": {"$gte": int(n)}}
                   for t, s, n in kept]
        return await self._delete(clauses, model)

    async def delete_sources(self, source_keys: Iterable[str], *, letter_prefixes: Iterable[str] = (),
                             model: str | None = None) -> int:
        """Drop records of these `doc_type:source_id` keys (and of dispute letters of these dispute ids)."""
        by_type: dict[str, list[str]] = {}
        for key in source_keys:
            t, _, sid = key.partition(":")
            by_type.setdefault(t, []).append(sid)
        clauses: list[dict[str, Any]] = [{**eq_filter("source_type", t), **eq_filter("source_id", sid)}
                                         for t, ids in by_type.items() for sid in sorted(set(ids))]
        clauses += [{**eq_filter("source_type", "dispute_letter"), "source_id": {"$regex": f"^{re.escape(p)}\\."}}
                    for p in letter_prefixes]
        return await self._delete(clauses, model)

    async def _delete(self, clauses: list[dict[str, Any]], model: str | None) -> int:
        """One flat filter per clause, a few at a time: FerretDB pushes a flat filter's equalities down to the
        `source_id` index, and nothing of an `$or` or `$and` (which would scan every record per call)."""
        sem = asyncio.Semaphore(_PARALLEL)

        async def one(flt: dict[str, Any]) -> int:
            if model is not None:
                flt = {**flt, **eq_filter("model", model)}
            async with sem, guard("delete embeddings"):
                return (await self.coll.delete_many(flt)).deleted_count

        return sum(await asyncio.gather(*(one(c) for c in clauses)))

    async def delete_index(self, index_name: str) -> int:
        """Drop every record of one search index (its `--reset`)."""
        async with guard("delete embeddings"):
            return (await self.coll.delete_many(eq_filter("index_name", index_name))).deleted_count

    async def count(self, *, index_name: str | None = None, source_type: str | None = None) -> int:
        flt: dict[str, Any] = {}
        if index_name is not None:
            flt.update(eq_filter("index_name", index_name))
        if source_type is not None:
            flt.update(eq_filter("source_type", source_type))
        async with guard("count embeddings"):
            return await self.coll.count_documents(flt)

    async def for_source(self, source_type: str, source_id: str) -> list[EmbeddingRecord]:
        async with guard("read embeddings"):
            rows = await self.coll.find({**eq_filter("source_type", source_type), **eq_filter("source_id", source_id)}
                                        ).sort("chunk_index", 1).to_list(1000)
        return [EmbeddingRecord.model_validate(r) for r in rows]
