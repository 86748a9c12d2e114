"""Bulk loading of the credit store: unordered `insert_many` in batches, several in flight at once.

One ordered `insert_many` at a time leaves the server idle while the client builds the next batch and the
client idle while the server writes; unordered batches sent concurrently keep both busy (FerretDB writes
each request on its own PostgreSQL connection). Inserts are idempotent: documents whose `_id` exists are
counted as already there (a resumed load re-sends at most the batches that were in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase

from stores.errors import StoreError
from stores.mongo.client import MongoStore
from stores.mongo.credit import as_db, guard, insert_many_idempotent

#: Documents per `insert_many`: large enough to amortise a round trip, small enough that a batch with a
#: duplicate (FerretDB then retries it one document at a time) stays cheap.
BATCH_DOCS = 500
#: `insert_many` requests in flight at once (FerretDB's pool to PostgreSQL holds 20 connections).
PARALLEL = 8


#: MongoDB's duplicate-key error: the document is already there (a resumed load).
DUPLICATE_KEY = 11000


def encode(docs: Sequence[dict[str, Any]]) -> list[bytes]:
    """BSON of each document: made where the documents are built (a worker process), sent as they are."""
    return [bson.encode(d) for d in docs]


async def insert_encoded(db: AsyncDatabase, collection: str, docs: Sequence[bytes]) -> int:
    """Unordered `insert` command of already-encoded documents (copied into the message, never decoded
    again); duplicates count as already written. Returns how many were new."""
    if not docs:
        return 0
    async with guard(f"write {collection}", db):
        res = await db.command({"insert": collection, "documents": [RawBSONDocument(b) for b in docs],
                                "ordered": False})
    errors = res.get("writeErrors") or []
    if bad := [e for e in errors if e.get("code") != DUPLICATE_KEY]:
        raise StoreError(f"write {collection}: {len(bad)} document(s) refused (code {bad[0].get('code')})",
                         store="mongo")
    return int(res.get("n", 0))


class BulkInserter:
    """Concurrent, unordered, idempotent inserts; `insert` returns how many documents were new."""

    def __init__(self, store: MongoStore | AsyncDatabase, *, batch_docs: int = BATCH_DOCS,
                 parallel: int = PARALLEL) -> None:
        if batch_docs < 1 or parallel < 1:
            raise ValueError("batch_docs and parallel must be positive")
        self.db = as_db(store)
        self.batch_docs = batch_docs
        self._slots = asyncio.Semaphore(parallel)
        self.inserted: dict[str, int] = {}

    async def _one(self, collection: str, docs: list[dict[str, Any]] | list[bytes]) -> int:
        async with self._slots:
            if docs and isinstance(docs[0], bytes):
                n = await insert_encoded(self.db, collection, docs)  # type: ignore[arg-type]
            else:
                n = await insert_many_idempotent(self.db[collection], docs)  # type: ignore[arg-type]
        self.inserted[collection] = self.inserted.get(collection, 0) + n
        return n

    async def insert(self, collection: str, docs: Sequence[dict[str, Any]] | Sequence[bytes]) -> int:
        """Insert `docs` (documents, or their BSON from `encode`) in batches of `batch_docs`, up to `parallel`
        requests at once (shared by every caller of this inserter)."""
        parts = [list(docs[i:i + self.batch_docs]) for i in range(0, len(docs), self.batch_docs)]
        return sum(await asyncio.gather(*(self._one(collection, p) for p in parts)))


class LoadProgress:
    """Checkpoints of a resumable bulk load: one marker per finished unit (e.g. a batch of users), written
    only after every document of the unit was acknowledged, so a resumed load skips exactly those."""

    def __init__(self, store: MongoStore | AsyncDatabase, load: str) -> None:
        from stores.mongo.collections import LOAD_PROGRESS

        self.coll = as_db(store)[LOAD_PROGRESS]
        self.load = load

    async def done(self) -> set[str]:
        """Units of this load already finished."""
        from stores.mongo.credit import guard
        from stores.mongo.safety import eq_filter

        async with guard("read load progress"):
            return {d["unit"] async for d in self.coll.find(eq_filter("load", self.load), {"unit": 1})}

    async def mark(self, unit: str) -> None:
        from stores.mongo.credit import guard
        from stores.mongo.documents import now

        async with guard("write load progress"):
            await self.coll.replace_one({"_id": {"$eq": f"{self.load}|{unit}"}},
                                        {"load": self.load, "unit": unit, "at": now()}, upsert=True)
