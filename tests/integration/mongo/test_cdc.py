"""CDC: change streams where the server has them; otherwise the outbox, which loses no event across restarts."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

import pytest

from stores.mongo.cdc import (
    OUTBOX_RETENTION,
    ChangeStreamSource,
    Outbox,
    OutboxConsumer,
    OutboxGap,
    dispute_event_id,
    open_feed,
    plan_event_id,
)
from stores.mongo.client import MongoStore
from stores.mongo.collections import ensure_schema
from stores.mongo.credit import ActionPlanRepository, CreditReportRepository, DisputeRepository
from stores.mongo.documents import ActionPlan, DisputeStatus, now
from stores.mongo.retention import purge_expired
from tests.integration.mongo.factories import dispute, report, uid


@pytest.fixture(scope="module")
def disputes(db, encryption):
    return DisputeRepository(db, encryption=encryption)


@pytest.fixture(scope="module")
def reports(db, encryption):
    return CreditReportRepository(db, encryption=encryption)


async def _drain(consumer: OutboxConsumer) -> list:
    got = []
    while True:
        events = await consumer.poll()
        await consumer.commit()
        if not events:
            return got
        got += events


async def test_writes_emit_events(db, disputes, reports):
    consumer = OutboxConsumer(db, f"c-{uid()}")
    await _drain(consumer)
    user = uid()
    d = await disputes.create(dispute(user))
    await disputes.transition(d.id, DisputeStatus.SUBMITTED_TO_BUREAU, "sent")
    r = await reports.add_version(report(user))
    events = await _drain(consumer)
    assert [(e.topic, e.op, e.document_id) for e in events] == [
        ("dispute_cases", "insert", d.id), ("dispute_cases", "update", d.id), ("credit_reports", "insert", r.id)]
    assert events[1].data["status"] == "submitted_to_bureau" and events[2].data["version"] == 1
    assert all(e.user_id == user for e in events)
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_no_event_lost_across_consumer_restart(db, disputes, reports):
    name = f"indexer-{uid()}"
    first = OutboxConsumer(db, name, batch_size=7)
    await _drain(first)  # start from "now"
    expected: set[str] = set()
    seen: list[str] = []

    async def writer(k: int) -> None:
        user = uid()
        d = await disputes.create(dispute(user))
        expected.add(d.last_event_id)
        for target in (DisputeStatus.SUBMITTED_TO_BUREAU, DisputeStatus.UNDER_REVIEW):
            d = await disputes.transition(d.id, target, None)
            expected.add(d.last_event_id)
        r = await reports.add_version(report(user, score=500 + k))
        expected.add(f"credit_reports:{r.id}")

    writers = asyncio.gather(*(writer(k) for k in range(30)))
    # consume a few batches, then "crash" after handling a batch but before committing it
    for _ in range(3):
        seen += [e.event_id for e in await first.poll()]
        await first.commit()
    seen += [e.event_id for e in await first.poll()]  # handled, never committed
    del first
    await writers
    second = OutboxConsumer(db, name, batch_size=7)  # a restarted process: state only from the checkpoint
    seen += [e.event_id for e in await _drain(second)]
    assert expected <= set(seen), f"lost {len(expected - set(seen))} events"
    assert len(expected) == 30 * 4


async def test_gap_is_waited_on_then_skipped(db):
    outbox = Outbox(db)
    consumer = OutboxConsumer(db, f"gap-{uid()}", gap_timeout=0.2)
    await _drain(consumer)
    last = await outbox._last_seq()
    eid = f"x:{uid()}"  # seq last+1 missing (e.g. deleted by retention), last+2 present
    await db.outbox_events.insert_one({"_id": eid, "seq": last + 2, "topic": "dispute_cases", "op": "update",
                                       "document_id": "d1", "user_id": None, "at": now(), "data": {}})
    assert await consumer.poll() == []  # a young gap is waited on
    await asyncio.sleep(0.3)
    assert [x.event_id for x in await consumer.poll()] == [eid]
    await consumer.commit()


async def test_duplicate_emit_is_a_noop(db):
    outbox = Outbox(db)
    consumer = OutboxConsumer(db, f"dup-{uid()}", gap_timeout=0.1)
    await _drain(consumer)
    eid = f"x:{uid()}"
    await outbox.emit("dispute_cases", "update", "d1", uid(), {}, event_id=eid)
    assert await outbox.emit("dispute_cases", "update", "d1", uid(), {}, event_id=eid) is None
    after = await outbox.emit("dispute_cases", "update", "d2", uid(), {}, event_id=f"x:{uid()}")
    got = await _drain(consumer)
    assert [g.event_id for g in got] == [eid, after.event_id]


async def test_reconcile_reemits_event_lost_between_the_two_writes(db, disputes):
    d = await disputes.create(dispute(uid()))
    await db.outbox_events.delete_one({"_id": dispute_event_id(d.id, 1)})  # crash before the outbox write
    assert await Outbox(db).reconcile(now() - timedelta(minutes=1)) >= 1
    assert await db.outbox_events.count_documents({"_id": dispute_event_id(d.id, 1)}) == 1
    assert await Outbox(db).reconcile(now() - timedelta(minutes=1)) == 0


async def test_reconcile_reemits_a_lost_action_plan_event(db):
    plan = await ActionPlanRepository(db).add_version(ActionPlan(user_id=uid()))
    await db.outbox_events.delete_one({"_id": plan_event_id(plan.id)})  # crash before the outbox write
    assert await Outbox(db).reconcile(now() - timedelta(minutes=1)) >= 1
    event = await db.outbox_events.find_one({"_id": plan_event_id(plan.id)})
    assert event is not None and event["topic"] == "action_plans" and event["document_id"] == plan.id
    assert await Outbox(db).reconcile(now() - timedelta(minutes=1)) == 0


async def test_open_feed_falls_back_to_outbox(db, caps):
    feed = await open_feed(db, "x")
    assert isinstance(feed, ChangeStreamSource if caps["change_streams"] else OutboxConsumer)


@pytest.mark.needs_feature("change_streams")
async def test_change_stream_source_delivers_and_resumes(db, disputes):
    source = ChangeStreamSource(db, f"cs-{uid()}")
    user = uid()

    async def first_event():
        async for event, token in source.events():
            await source.commit(token)
            return event

    task = asyncio.create_task(first_event())
    await asyncio.sleep(0.5)
    d = await disputes.create(dispute(user))
    event = await asyncio.wait_for(task, 10)
    assert event.document_id == d.id and event.topic == "dispute_cases"


async def test_concurrent_emits_get_distinct_contiguous_seqs(db, mongo_url):
    from pymongo import AsyncMongoClient

    other = AsyncMongoClient(mongo_url, tz_aware=True, retryWrites=False)  # a second "process"
    try:
        outboxes = [Outbox(db), Outbox(other[db.name])]
        start = await outboxes[0]._last_seq()
        events = await asyncio.gather(*(outboxes[i % 2].emit("dispute_cases", "update", f"d{i}", None, {},
                                                             event_id=f"c:{uid()}") for i in range(40)))
    finally:
        await other.close()
    assert sorted(e.seq for e in events) == list(range(start + 1, start + 41))


@pytest.fixture
async def own_db(mongo_url):
    """A database of its own: pruning depends on every consumer registered in it."""
    store = await MongoStore(mongo_url, f"kredete_test_cdc_{secrets.token_hex(4)}").connect()
    await ensure_schema(store.db)
    yield store.db
    await store.client.drop_database(store.db.name)
    await store.close()


async def _emit(db, n: int) -> list:
    outbox = Outbox(db)
    return [await outbox.emit("dispute_cases", "update", f"d{i}", uid(), {}, event_id=f"x:{uid()}")
            for i in range(n)]


async def _age(db, days: float) -> None:
    """Make every event `days` old (with the expiry the old schema gave it)."""
    at = now() - timedelta(days=days)
    await db.outbox_events.update_many({}, {"$set": {"at": at, "expires_at": at + OUTBOX_RETENTION}})


async def test_retention_keeps_events_a_registered_consumer_has_not_read(own_db):
    db = own_db
    fast, slow = OutboxConsumer(db, "fast"), OutboxConsumer(db, "slow")
    await fast.poll()
    await slow.poll()  # both registered before anything was written
    events = await _emit(db, 6)
    await _drain(fast)
    slow.batch_size = 2
    await slow.poll()
    await slow.commit()  # slow read 2 of 6, then went offline for longer than the retention
    await _age(db, 30)
    deleted = await purge_expired(db)
    assert deleted["outbox_events"] == 2  # only what both consumers have passed
    slow.batch_size = 100
    assert [e.event_id for e in await _drain(slow)] == [e.event_id for e in events[2:]]
    deleted = await purge_expired(db)
    assert deleted["outbox_events"] == 3  # the newest is kept: the next seq is allocated from it
    after = await Outbox(db).emit("dispute_cases", "update", "d", uid(), {}, event_id=f"x:{uid()}")
    assert after.seq == events[-1].seq + 1
    assert [e.event_id for e in await _drain(fast)] == [after.event_id]


async def test_young_events_are_kept_even_when_consumed(own_db):
    consumer = OutboxConsumer(own_db, "c")
    await consumer.poll()
    await _emit(own_db, 3)
    await _drain(consumer)
    assert (await purge_expired(own_db))["outbox_events"] == 0
    await _age(own_db, 8)
    assert (await purge_expired(own_db, dry_run=True))["outbox_events"] == 2
    assert await own_db.outbox_events.count_documents({}) == 3


async def test_a_consumer_whose_unread_events_were_pruned_fails_loudly(own_db, caplog):
    db = own_db
    gone = OutboxConsumer(db, "gone", gap_timeout=0.0)
    await gone.poll()
    await _emit(db, 4)
    gone.batch_size = 1
    await gone.poll()
    await gone.commit()  # read 1 of 4
    await gone.unregister()  # decommissioned while behind: nothing protects its events any more
    live = OutboxConsumer(db, "live")
    await _drain(live)
    await _age(db, 30)
    assert (await purge_expired(db))["outbox_events"] == 3
    again = OutboxConsumer(db, "gone", gap_timeout=0.0)  # the same name comes back from its checkpoint...
    await db.cdc_checkpoints.insert_one({"_id": "outbox:gone", "seq": 1})
    with caplog.at_level(logging.ERROR, logger="stores.mongo.cdc"), pytest.raises(OutboxGap):
        await again.poll()  # ...and must not skip events 2..3 as if they were a dead writer's gap
    assert "pruned before it read them" in caplog.text
    fresh = OutboxConsumer(db, f"new-{uid()}")
    assert len(await _drain(fresh)) == 1  # a new consumer starts at the oldest retained event
