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
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from stores.errors import StoreError
from stores.mongo.backend_keyset import BackendKeyset, Cond, MissingTable, delete_in_range, keyset_of
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
#: Ids per `_id` lookup of `Outbox._missing` on FerretDB's backend.
_ID_CHUNK = 5_000
#: Events per round of `prune`'s deletes on FerretDB's backend (each deleted by `_id`, a pushed-down equality).
_PRUNE_CHUNK = 1_000
T = TypeVar("T")


class Outbox:
    """Append-only event log with a monotonically allocated sequence number.

    On FerretDB's PostgreSQL backend (a `keyset`: by default the one registered for `db`'s MongoStore) every read
    by a range or order of `seq`, `at`, `updated_at` or `created_at` (the next seq, a consumer's batch, the prune
    watermark, the reconciliation window) walks FerretDB's btree index in PostgreSQL and reads the documents by
    `_id`: FerretDB 1.24 pushes no range, `$in`, sort or limit down, so the same find reads the whole collection.
    Without a keyset (MongoDB, or `use_keyset=False`), or before the collection exists, the finds themselves.
    """

    def __init__(self, db: AsyncDatabase, *, keyset: BackendKeyset | None = None,
                 use_keyset: bool = True) -> None:
        self.db = db
        self.coll = db[OUTBOX]
        self.keyset = (keyset or keyset_of(db)) if use_keyset else None
        # One emitter at a time per process and database: spares the unique-index retry loop the
        # in-process contention; other processes are still serialised by the unique index.
        self._lock = _EMIT_LOCKS.setdefault((id(db.client), db.name), asyncio.Lock())

    async def _read(self, fast: Callable[[BackendKeyset], Awaitable[T]], slow: Callable[[], Awaitable[T]]) -> T:
        """`fast` on the keyset when there is one and it knows the collection, else `slow` (the find)."""
        if self.keyset is not None:
            with contextlib.suppress(MissingTable):
                return await fast(self.keyset)
        return await slow()

    async def _last_seq(self) -> int:
        async def fast(ks: BackendKeyset) -> int:
            pos = await ks.range(OUTBOX, "seq", order="desc", limit=1)
            return pos[0].value if pos else 0

        async def slow() -> int:
            doc = await self.coll.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
            return int(doc["seq"]) if doc else 0

        return await self._read(fast, slow)

    async def last_seq(self) -> int:
        """The newest event's seq (0: none)."""
        return await self._last_seq()

    async def first_after(self, seq: int) -> dict[str, Any] | None:
        """The oldest event after `seq` (its `_id`, `seq` and `at`), None when there is none."""
        async def fast(ks: BackendKeyset) -> dict[str, Any] | None:
            pos = await ks.range(OUTBOX, "seq", [Cond("seq", ">", seq)], limit=1, fields=("at",))
            return {"_id": pos[0].id, "seq": pos[0].value, "at": pos[0].fields["at"]} if pos else None

        return await self._read(fast, lambda: self.coll.find_one({"seq": {"$gt": seq}}, {"seq": 1, "at": 1},
                                                                 sort=[("seq", ASCENDING)]))

    async def after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events after `seq`, in seq order (whole documents)."""
        async def fast(ks: BackendKeyset) -> list[dict[str, Any]]:
            ids = [p.id for p in await ks.range(OUTBOX, "seq", [Cond("seq", ">", seq)], limit=limit)]
            docs = [await self.coll.find_one({"_id": {"$eq": i}}) for i in ids]
            return [d for d in docs if d is not None]  # one pruned meanwhile is gone, as from the find

        async def slow() -> list[dict[str, Any]]:
            return await self.coll.find({"seq": {"$gt": seq}}).sort("seq", ASCENDING).limit(limit).to_list(limit)

        return await self._read(fast, slow)

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
        if upto < last - 1 and await self._old_after(upto, cutoff):
            slowest = sorted(n for n, c in checkpoints.items() if c == upto)
            log.warning("outbox: consumers %s hold back events older than %s (unregister dead consumers)",
                        slowest, retention)
        newest_old = await self._newest_old(upto, cutoff) if upto > 0 else None
        if newest_old is None:
            return 0
        if dry_run:
            return await self._read(lambda ks: ks.count(OUTBOX, [Cond("seq", "<=", newest_old)]),
                                    lambda: self.coll.count_documents({"seq": {"$lte": newest_old}}))
        # Watermark before deleting: whoever still needed those events must see a loss, never skip it.
        await self.db[CDC_CHECKPOINTS].update_one({"_id": {"$eq": PRUNED_ID}},
                                                  {"$max": {"seq": newest_old}, "$set": {"at": now()}},
                                                  upsert=True)
        return await self._read(
            lambda ks: delete_in_range(self.coll, ks, "seq", [Cond("seq", "<=", newest_old)],
                                       {"seq": {"$lte": newest_old}}, chunk=_PRUNE_CHUNK),
            lambda: self._delete_many(newest_old))

    async def _old_after(self, upto: int, cutoff: datetime) -> bool:
        """Whether an event after `upto` is older than `cutoff` (one a consumer holds back)."""
        where = [Cond("seq", ">", upto), Cond("at", "<", cutoff)]
        return bool(await self._read(
            lambda ks: ks.range(OUTBOX, "seq", where, limit=1),
            lambda: self.coll.count_documents({"seq": {"$gt": upto}, "at": {"$lt": cutoff}}, limit=1)))

    async def _newest_old(self, upto: int, cutoff: datetime) -> int | None:
        """The highest seq up to `upto` of an event older than `cutoff`."""
        async def fast(ks: BackendKeyset) -> int | None:
            pos = await ks.range(OUTBOX, "seq", [Cond("seq", "<=", upto), Cond("at", "<", cutoff)], order="desc",
                                 limit=1)
            return pos[0].value if pos else None

        async def slow() -> int | None:
            doc = await self.coll.find_one({"seq": {"$lte": upto}, "at": {"$lt": cutoff}}, {"seq": 1},
                                           sort=[("seq", DESCENDING)])
            return int(doc["seq"]) if doc else None

        return await self._read(fast, slow)

    async def _delete_many(self, upto: int) -> int:
        return (await self.coll.delete_many({"seq": {"$lte": upto}})).deleted_count

    async def _missing(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()

        async def fast(ks: BackendKeyset) -> set[str]:
            found: set[str] = set()
            for n in range(0, len(ids), _ID_CHUNK):
                found |= await ks.existing_ids(OUTBOX, ids[n:n + _ID_CHUNK])
            return found

        async def slow() -> set[str]:
            return {d["_id"] async for d in self.coll.find({"_id": {"$in": ids}}, {"_id": 1})}

        return set(ids) - await self._read(fast, slow)

    async def _changed(self, collection: str, field: str, since: datetime, fields: tuple[str, ...]
                       ) -> list[dict[str, Any]]:
        """`_id` and `fields` of the documents of `collection` whose date `field` is at or after `since`."""
        async def fast(ks: BackendKeyset) -> list[dict[str, Any]]:
            return [{"_id": p.id, **p.fields} for p in await ks.range(collection, field, [Cond(field, ">=", since)],
                                                                      fields=fields)]

        async def slow() -> list[dict[str, Any]]:
            return [d async for d in self.db[collection].find({field: {"$gte": since}}, dict.fromkeys(fields, 1))]

        return await self._read(fast, slow)

    async def reconcile(self, since: datetime) -> int:
        """Re-emit events of changes made since `since` whose outbox write was lost; returns how many."""
        emitted = 0
        disputes = await self._changed(DISPUTE_CASES, "updated_at", since,
                                       ("user_id", "status", "revision", "last_event_id"))
        missing = await self._missing([d["last_event_id"] for d in disputes if d.get("last_event_id")])
        for d in disputes:
            if d.get("last_event_id") in missing:
                await self.emit(DISPUTE_CASES, "update", d["_id"], d["user_id"],
                                {"status": d["status"], "revision": d["revision"], "reconciled": True},
                                event_id=d["last_event_id"])
                emitted += 1
        reports = await self._changed(CREDIT_REPORTS, "created_at", since, ("user_id", "bureau", "version"))
        missing = await self._missing([report_event_id(r["_id"]) for r in reports])
        for r in reports:
            if report_event_id(r["_id"]) in missing:
                await self.emit(CREDIT_REPORTS, "insert", r["_id"], r["user_id"],
                                {"bureau": r["bureau"], "version": r["version"], "reconciled": True},
                                event_id=report_event_id(r["_id"]))
                emitted += 1
        plans = await self._changed(ACTION_PLANS, "created_at", since, ("user_id", "version"))
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

    def __init__(self, db: AsyncDatabase, name: str, *, topics: Iterable[str] = TOPICS,
                 batch_size: int = 100, gap_timeout: float = 10.0, keyset: BackendKeyset | None = None,
                 use_keyset: bool = True) -> None:
        self.db = db
        self.keyset = keyset
        self.use_keyset = use_keyset
        self.name = name
        self.topics = tuple(topics)
        self.batch_size = batch_size
        self.gap_timeout = gap_timeout
        self._pending_to: int | None = None
        self._registered = False

    @functools.cached_property
    def outbox(self) -> Outbox:
        """The outbox it reads (made on first use, when the store's keyset is registered)."""
        return Outbox(self.db, keyset=self.keyset, use_keyset=self.use_keyset)

    @property
    def _ckpt_id(self) -> str:
        return f"outbox:{self.name}"

    async def checkpoint(self) -> int:
        doc = await self.db[CDC_CHECKPOINTS].find_one({"_id": {"$eq": self._ckpt_id}})
        return int(doc["seq"]) if doc else 0

    async def register(self) -> None:
        """Create the checkpoint (idempotent); a new consumer starts at the oldest retained event."""
        outbox = self.outbox
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
        pruned = await self.outbox.pruned_upto()
        if start < pruned:
            log.error("outbox consumer %r: events %d..%d were pruned before it read them", self.name, start + 1,
                      pruned)
            raise OutboxGap(f"outbox consumer {self.name!r} lost events {start + 1}..{pruned} (pruned while it "
                            "was not registered): rebuild its state, then unregister() and poll again", store="mongo")
        rows = await self.outbox.after(start, self.batch_size)
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

    def __init__(self, db: AsyncDatabase, name: str, *, topics: Iterable[str] = TOPICS) -> None:
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
        async with await self.db.watch(pipeline, **kwargs) as stream:
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


async def change_streams_supported(db: AsyncDatabase) -> bool:
    """True when `watch()` is accepted (replica set / sharded cluster with change streams)."""
    try:
        async with await db[DISPUTE_CASES].watch(max_await_time_ms=1) as stream:
            await stream.try_next()
        return True
    except OperationFailure as exc:
        if exc.code in (NOT_IMPLEMENTED, 40573, 40324, 115) or "not implemented" in str(exc).lower():
            return False
        raise


async def open_feed(db: AsyncDatabase, name: str, *,
                    mode: Literal["auto", "change_stream", "outbox"] = "auto") -> ChangeStreamSource | OutboxConsumer:
    """The best available event source for a named consumer."""
    if mode == "change_stream" or (mode == "auto" and await change_streams_supported(db)):
        return ChangeStreamSource(db, name)
    return OutboxConsumer(db, name)
