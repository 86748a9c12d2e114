"""Change data capture for dispute and credit-report updates: change streams, or a transactional outbox.

Two sources give the same `ChangeEvent`s (for cache invalidation and search indexing):

- `ChangeStreamSource`: `collection.watch()` on a replica set / Atlas, resume token checkpointed in
  `cdc_checkpoints`, so a restarted consumer resumes where it stopped.
- `Outbox` + `OutboxConsumer`: where the server has no change streams (FerretDB 1.x). Writers append an
  event with the next `seq` (claimed through a unique index) right after the change; the change itself
  records its event id (`last_event_id`, or the report id), so `Outbox.reconcile()` re-emits any event
  lost to a crash between the two writes (the server has no multi-document transactions either).
  Consumers checkpoint the last contiguous `seq` they handled (at-least-once; handlers must be
  idempotent, events carry ids). `Outbox.prune()` (run by the retention job) deletes only events older
  than `OUTBOX_RETENTION` that every registered consumer has passed; a consumer that finds events it has
  not read deleted anyway (it was unregistered) raises `OutboxGap` instead of skipping them.

`open_feed()` picks change streams when the server supports them, else the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from stores.errors import StoreError
from stores.mongo.collections import (
    ACTION_PLANS,
    CDC_CHECKPOINTS,
    CREDIT_REPORTS,
    DISPUTE_CASES,
    NOT_IMPLEMENTED,
    OUTBOX,
)
from stores.mongo.documents import UtcDatetime, now

log = logging.getLogger(__name__)

TOPICS = (DISPUTE_CASES, CREDIT_REPORTS, ACTION_PLANS)
#: Minimum age of an outbox event before it may be pruned (and only once every registered consumer passed it).
OUTBOX_RETENTION = timedelta(days=7)
CONSUMER_PREFIX = "outbox:"
#: `cdc_checkpoints` document holding the highest seq `prune` has deleted (its `_id` is no consumer's).
PRUNED_ID = "pruned:outbox"


class OutboxGap(StoreError):
    """A consumer's next events were deleted before it read them: it must be rebuilt, not resumed."""


class ChangeEvent(BaseModel):
    """One change of a watched document; `event_id` is stable across re-deliveries."""

    event_id: str
    topic: str
    op: Literal["insert", "update", "replace", "delete"]
    document_id: str
    user_id: str | None = None
    at: UtcDatetime
    seq: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def dispute_event_id(dispute_id: str, revision: int) -> str:
    return f"{DISPUTE_CASES}:{dispute_id}:{revision}"


def report_event_id(report_id: str) -> str:
    return f"{CREDIT_REPORTS}:{report_id}"


def plan_event_id(plan_id: str) -> str:
    return f"{ACTION_PLANS}:{plan_id}"


_EMIT_LOCKS: dict[tuple[int, str], asyncio.Lock] = {}


class Outbox:
    """Append-only event log with a monotonically allocated sequence number."""

    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self.db = db
        self.coll = db[OUTBOX]
        # One emitter at a time per process and database: spares the unique-index retry loop the
        # in-process contention; other processes are still serialised by the unique index.
        self._lock = _EMIT_LOCKS.setdefault((id(db.client), db.name), asyncio.Lock())

    async def _last_seq(self) -> int:
        doc = await self.coll.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return int(doc["seq"]) if doc else 0

    async def emit(self, topic: str, op: str, document_id: str, user_id: str | None, data: dict[str, Any],
                   *, event_id: str, max_attempts: int = 200) -> ChangeEvent | None:
        """Append an event with seq = last + 1; a second emit of the same `event_id` is a no-op (None).

        The seq is claimed by the unique index on `seq` (insert-or-retry), not by a counter: FerretDB 1.x
        loses concurrent `$inc`/findAndModify updates, while unique-index inserts are atomic everywhere.
        """
        async with self._lock:
            return await self._emit(topic, op, document_id, user_id, data, event_id, max_attempts)

    async def _emit(self, topic: str, op: str, document_id: str, user_id: str | None, data: dict[str, Any],
                    event_id: str, max_attempts: int) -> ChangeEvent | None:
        for attempt in range(max_attempts):
            seq = await self._last_seq() + 1
            at = now()
            event = ChangeEvent(event_id=event_id, topic=topic, op=op,  # type: ignore[arg-type]
                                document_id=document_id, user_id=user_id, at=at, seq=seq, data=data)
            # No `expires_at`: a TTL index would delete events consumers have not read; `prune` decides.
            doc = {"_id": event_id, **event.model_dump(exclude={"event_id"})}
            try:
                await self.coll.insert_one(doc)
                return event
            except DuplicateKeyError:
                if await self.coll.count_documents({"_id": {"$eq": event_id}}, limit=1):
                    return None
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        raise DuplicateKeyError("outbox: could not claim a sequence number")

    async def consumers(self) -> dict[str, int]:
        """Registered outbox consumers and their checkpoints."""
        rows = self.db[CDC_CHECKPOINTS].find({"_id": {"$regex": f"^{CONSUMER_PREFIX}"}}, {"seq": 1})
        return {d["_id"][len(CONSUMER_PREFIX):]: int(d.get("seq", 0)) async for d in rows}

    async def pruned_upto(self) -> int:
        """The highest seq `prune` has deleted (0: nothing pruned yet)."""
        doc = await self.db[CDC_CHECKPOINTS].find_one({"_id": {"$eq": PRUNED_ID}})
        return int(doc["seq"]) if doc else 0

    async def prune(self, *, retention: timedelta = OUTBOX_RETENTION, at: datetime | None = None,
                    dry_run: bool = False) -> int:
        """Delete (or count) events older than `retention` that every registered consumer has passed.

        The newest event is always kept: the next seq is allocated from it and must never go back.
        """
        cutoff = (at or now()) - retention
        checkpoints = await self.consumers()
        last = await self._last_seq()
        upto = min([last - 1, *checkpoints.values()])
        if upto < last - 1 and await self.coll.count_documents({"seq": {"$gt": upto}, "at": {"$lt": cutoff}},
                                                               limit=1):
            slowest = sorted(n for n, c in checkpoints.items() if c == upto)
            log.warning("outbox: consumers %s hold back events older than %s (unregister dead consumers)",
                        slowest, retention)
        newest_old = await self.coll.find_one({"seq": {"$lte": upto}, "at": {"$lt": cutoff}}, {"seq": 1},
                                              sort=[("seq", DESCENDING)]) if upto > 0 else None
        if newest_old is None:
            return 0
        flt = {"seq": {"$lte": int(newest_old["seq"])}}
        if dry_run:
            return await self.coll.count_documents(flt)
        # Watermark before deleting: whoever still needed those events must see a loss, never skip it.
        await self.db[CDC_CHECKPOINTS].update_one({"_id": {"$eq": PRUNED_ID}},
                                                  {"$max": {"seq": int(newest_old["seq"])}, "$set": {"at": now()}},
                                                  upsert=True)
        return (await self.coll.delete_many(flt)).deleted_count

    async def _missing(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        found = {d["_id"] async for d in self.coll.find({"_id": {"$in": ids}}, {"_id": 1})}
        return set(ids) - found

    async def reconcile(self, since: datetime) -> int:
        """Re-emit events of changes made since `since` whose outbox write was lost; returns how many."""
        emitted = 0
        disputes = [d async for d in self.db[DISPUTE_CASES].find(
            {"updated_at": {"$gte": since}}, {"user_id": 1, "status": 1, "revision": 1, "last_event_id": 1})]
        missing = await self._missing([d["last_event_id"] for d in disputes if d.get("last_event_id")])
        for d in disputes:
            if d.get("last_event_id") in missing:
                await self.emit(DISPUTE_CASES, "update", d["_id"], d["user_id"],
                                {"status": d["status"], "revision": d["revision"], "reconciled": True},
                                event_id=d["last_event_id"])
                emitted += 1
        reports = [r async for r in self.db[CREDIT_REPORTS].find(
            {"created_at": {"$gte": since}}, {"user_id": 1, "bureau": 1, "version": 1})]
        missing = await self._missing([report_event_id(r["_id"]) for r in reports])
        for r in reports:
            if report_event_id(r["_id"]) in missing:
                await self.emit(CREDIT_REPORTS, "insert", r["_id"], r["user_id"],
                                {"bureau": r["bureau"], "version": r["version"], "reconciled": True},
                                event_id=report_event_id(r["_id"]))
                emitted += 1
        plans = [p async for p in self.db[ACTION_PLANS].find(
            {"created_at": {"$gte": since}}, {"user_id": 1, "version": 1})]
        missing = await self._missing([plan_event_id(p["_id"]) for p in plans])
        for p in plans:
            if plan_event_id(p["_id"]) in missing:
                await self.emit(ACTION_PLANS, "insert", p["_id"], p["user_id"],
                                {"version": p["version"], "reconciled": True}, event_id=plan_event_id(p["_id"]))
                emitted += 1
        return emitted


class OutboxConsumer:
    """A named, checkpointed reader of the outbox. Delivery is at-least-once, in `seq` order.

    The first poll registers the consumer (its checkpoint document): `Outbox.prune` never deletes events
    a registered consumer has not passed; `unregister()` a consumer that is gone for good. A gap in `seq`
    (a writer allocated a number and has not inserted yet, or died) is waited on until the event after it
    is `gap_timeout` seconds old, then skipped (a dead writer's change is re-emitted by `reconcile` with a
    new seq). Events deleted by `prune` before this consumer read them are not a gap to skip: `OutboxGap`.
    """

    def __init__(self, db: AsyncIOMotorDatabase, name: str, *, topics: Iterable[str] = TOPICS,
                 batch_size: int = 100, gap_timeout: float = 10.0) -> None:
        self.db = db
        self.name = name
        self.topics = tuple(topics)
        self.batch_size = batch_size
        self.gap_timeout = gap_timeout
        self._pending_to: int | None = None
        self._registered = False

    @property
    def _ckpt_id(self) -> str:
        return f"outbox:{self.name}"

    async def checkpoint(self) -> int:
        doc = await self.db[CDC_CHECKPOINTS].find_one({"_id": {"$eq": self._ckpt_id}})
        return int(doc["seq"]) if doc else 0

    async def register(self) -> None:
        """Create the checkpoint (idempotent); a new consumer starts at the oldest retained event."""
        outbox = Outbox(self.db)
        await self.db[CDC_CHECKPOINTS].update_one(
            {"_id": {"$eq": self._ckpt_id}},
            {"$setOnInsert": {"seq": await outbox.pruned_upto(), "registered_at": now()}}, upsert=True)
        self._registered = True

    async def unregister(self) -> None:
        """Forget this consumer: its unread events may then be pruned."""
        await self.db[CDC_CHECKPOINTS].delete_one({"_id": {"$eq": self._ckpt_id}})
        self._registered = False

    async def poll(self) -> list[ChangeEvent]:
        """Next contiguous batch after the checkpoint (not yet committed); OutboxGap when events this consumer
        had not read were pruned."""
        if not self._registered:
            await self.register()
        start = await self.checkpoint()
        pruned = await Outbox(self.db).pruned_upto()
        if start < pruned:
            log.error("outbox consumer %r: events %d..%d were pruned before it read them", self.name, start + 1,
                      pruned)
            raise OutboxGap(f"outbox consumer {self.name!r} lost events {start + 1}..{pruned} (pruned while it "
                            "was not registered): rebuild its state, then unregister() and poll again", store="mongo")
        cursor = self.db[OUTBOX].find({"seq": {"$gt": start}}).sort("seq", ASCENDING).limit(self.batch_size)
        rows = await cursor.to_list(self.batch_size)
        out: list[ChangeEvent] = []
        expected = start + 1
        last = start
        for row in rows:
            if row["seq"] != expected:
                # Seqs are allocated before the event's `at` is taken, so once the event after the gap is
                # older than gap_timeout, the missing seq's writer had that long to insert: skip the gap.
                age = (now() - _utc(row["at"])).total_seconds()
                if age <= self.gap_timeout:
                    break
                expected = row["seq"]
            last = row["seq"]
            expected = last + 1
            if row.get("topic") in self.topics:
                out.append(ChangeEvent(event_id=row["_id"], **{k: v for k, v in row.items()
                                                               if k in ChangeEvent.model_fields}))
        self._pending_to = last if last > start else None
        return out

    async def commit(self) -> None:
        """Advance the checkpoint past the batch returned by the last `poll`."""
        if self._pending_to is None:
            return
        await self.db[CDC_CHECKPOINTS].update_one(
            {"_id": {"$eq": self._ckpt_id}}, {"$max": {"seq": self._pending_to}, "$set": {"at": now()}},
            upsert=True)
        self._pending_to = None

    async def run(self, handler: Callable[[list[ChangeEvent]], Awaitable[None]], *,
                  stop: asyncio.Event, interval: float = 0.2) -> None:
        """poll → handler → commit until `stop` is set; transient server errors are retried."""
        while not stop.is_set():
            try:
                events = await self.poll()
                if events:
                    await handler(events)
                await self.commit()
                if events:
                    continue
            except PyMongoError:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


class ChangeStreamSource:
    """Change streams over the watched collections, with the resume token checkpointed by name."""

    def __init__(self, db: AsyncIOMotorDatabase, name: str, *, topics: Iterable[str] = TOPICS) -> None:
        self.db = db
        self.name = name
        self.topics = tuple(topics)

    @property
    def _ckpt_id(self) -> str:
        return f"stream:{self.name}"

    async def events(self) -> AsyncIterator[tuple[ChangeEvent, Any]]:
        """Yield (event, resume_token); call `commit(token)` after handling to checkpoint."""
        ckpt = await self.db[CDC_CHECKPOINTS].find_one({"_id": {"$eq": self._ckpt_id}})
        pipeline = [{"$match": {"ns.coll": {"$in": list(self.topics)},
                                "operationType": {"$in": ["insert", "update", "replace", "delete"]}}}]
        kwargs: dict[str, Any] = {"full_document": "updateLookup"}
        if ckpt and ckpt.get("token"):
            kwargs["resume_after"] = ckpt["token"]
        async with self.db.watch(pipeline, **kwargs) as stream:
            async for change in stream:
                full = change.get("fullDocument") or {}
                key = change["documentKey"]["_id"]
                topic = change["ns"]["coll"]
                rev = full.get("revision", full.get("version"))
                data = {k: full[k] for k in ("status", "revision", "bureau", "version") if k in full}
                event_id = (report_event_id(key) if topic == CREDIT_REPORTS else dispute_event_id(key, rev or 0))
                yield ChangeEvent(event_id=event_id, topic=topic, op=change["operationType"], document_id=str(key),
                                  user_id=full.get("user_id"), at=now(), data=data), change["_id"]

    async def commit(self, token: Any) -> None:
        await self.db[CDC_CHECKPOINTS].update_one({"_id": {"$eq": self._ckpt_id}},
                                                  {"$set": {"token": token, "at": now()}}, upsert=True)


async def change_streams_supported(db: AsyncIOMotorDatabase) -> bool:
    """True when `watch()` is accepted (replica set / sharded cluster with change streams)."""
    try:
        async with db[DISPUTE_CASES].watch(max_await_time_ms=1) as stream:
            await stream.try_next()
        return True
    except OperationFailure as exc:
        if exc.code in (NOT_IMPLEMENTED, 40573, 40324, 115) or "not implemented" in str(exc).lower():
            return False
        raise


async def open_feed(db: AsyncIOMotorDatabase, name: str, *,
                    mode: Literal["auto", "change_stream", "outbox"] = "auto") -> ChangeStreamSource | OutboxConsumer:
    """The best available event source for a named consumer."""
    if mode == "change_stream" or (mode == "auto" and await change_streams_supported(db)):
        return ChangeStreamSource(db, name)
    return OutboxConsumer(db, name)
