"""The credit store's background jobs on FerretDB read by range through PostgreSQL's btree indexes (issue 20).

FerretDB 1.24 pushes no range, `$in`, sort or limit down: the outbox's next seq, a consumer's batch, the prune
watermark, the reconciliation window and the retention job's expired documents each made it read the whole
collection. On its PostgreSQL backend they now walk a btree index (`stores.mongo.backend_keyset.range`). These
tests hold, on the real servers, that each such read answers what the old find answers (same data, both paths,
including values of another type in the field), that PostgreSQL serves it from an index, and that the jobs still
do their work through it (a lost event is re-emitted, expired documents and old events are deleted, a gap is
still waited on). Skipped off FerretDB-on-PostgreSQL, where the finds are the only path.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from config.settings import resolve
from stores.mongo.backend_keyset import Cond, NotServed
from stores.mongo.cdc import Outbox, OutboxConsumer, dispute_event_id, plan_event_id, report_event_id
from stores.mongo.collections import ACTION_PLANS, CREDIT_REPORTS, DISPUTE_CASES, OUTBOX
from stores.mongo.documents import now
from stores.mongo.pushdown import (
    PushdownIndexer,
    explain_find,
    index_scans,
    index_sql,
    plan_nodes,
    range_index_name,
)
from stores.mongo.retention import purge_expired
from stores.monitoring.mongo import MongoStats
from tests.integration.mongo.factories import uid

EVENTS = 3000  # enough rows that PostgreSQL prices an index scan below a sequential one
DOCS = 1500


async def _analyze(store) -> None:
    """Statistics for the planner (FerretDB's owner role; the keyset reads as the read-only reader)."""
    url = resolve().ferretdb_postgres_url
    assert url is not None
    conn = await asyncpg.connect(url.get_secret_value())
    try:
        for t in await conn.fetch(f'SELECT _jsonb->>\'table\' AS t FROM "{store.db.name}"._ferretdb_database_metadata'):
            await conn.execute(f'ANALYZE "{store.db.name}"."{t["t"]}"')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def jobs_db(open_reader_store):
    """A FerretDB database with a keyset: EVENTS outbox events over 8 days (a gap at seq 2000), DOCS disputes,
    reports and plans changed over the last two days (a few with a date stored as a string), the range indexes."""
    store = await open_reader_store("jobs")
    url = resolve().ferretdb_postgres_url
    if url is None:
        pytest.skip("KREDETE_FERRETDB_POSTGRES_URL is not set")
    db, t0 = store.db, now()
    events = [{"_id": f"dispute_cases:e{s}:1", "topic": "dispute_cases", "op": "update", "document_id": f"e{s}",
               "user_id": None, "at": t0 - timedelta(days=8) + s * timedelta(days=8) / EVENTS, "seq": s,
               "data": {"status": "opened", "revision": 1}} for s in range(1, EVENTS + 1) if s != 2000]
    await db[OUTBOX].insert_many(events)
    users = [uid() for _ in range(50)]
    disputes, reports, plans = [], [], []
    for n in range(DOCS):
        at = t0 - timedelta(minutes=2 * n)
        when = at.isoformat() if n % 97 == 5 else at  # a date of another type: never in a date range
        disputes.append({"_id": f"d{n:05}", "user_id": users[n % 50], "status": "opened", "revision": n % 4 + 1,
                         "updated_at": when, "last_event_id": dispute_event_id(f"d{n:05}", n % 4 + 1)
                         if n % 5 else None})
        reports.append({"_id": f"r{n:05}", "user_id": users[n % 50], "bureau": "equifax", "version": n,
                        "created_at": when})
        plans.append({"_id": f"p{n:05}", "user_id": users[n % 50], "version": n, "created_at": when})
    observations = [{"_id": f"o{n}", "user_id": users[n % 50], "trace_id": f"t{n // 10}",
                     "expires_at": t0 + timedelta(minutes=n)} for n in range(DOCS)]
    for coll, docs in ((DISPUTE_CASES, disputes), (CREDIT_REPORTS, reports), (ACTION_PLANS, plans),
                       ("trace_observations", observations)):
        await db[coll].insert_many(docs)
    report = await PushdownIndexer(db, url.get_secret_value()).ensure()
    await _analyze(store)
    return store, report, t0


def _norm(rows, fields):
    return sorted(tuple(r.get(f) for f in ("_id", *fields)) for r in rows)


async def test_ranges_answer_what_the_finds_answer(jobs_db):
    store, _, t_docs = jobs_db
    fast, slow = Outbox(store.db), Outbox(store.db, use_keyset=False)
    assert fast.keyset is store.keyset and slow.keyset is None
    assert await fast.last_seq() == await slow.last_seq() == EVENTS
    for seq in (0, 1500, 1990, 2000, EVENTS - 1, EVENTS):
        assert await fast.after(seq, 100) == await slow.after(seq, 100), seq
        a, b = await fast.first_after(seq), await slow.first_after(seq)
        assert (a and (a["_id"], a["seq"], a["at"])) == (b and (b["_id"], b["seq"], b["at"])), seq
    t0 = now()
    for upto, days in ((EVENTS - 1, 7), (1000, 7), (2500, 3), (10, 7.99)):
        cutoff = t0 - timedelta(days=days)
        assert await fast._newest_old(upto, cutoff) == await slow._newest_old(upto, cutoff), (upto, days)
        assert await fast._old_after(upto, cutoff) == await slow._old_after(upto, cutoff), (upto, days)
    ids = [f"dispute_cases:e{s}:1" for s in range(1900, 2100)] + ["nope"]
    assert await fast._missing(ids) == await slow._missing(ids) == {"dispute_cases:e2000:1", "nope"}
    for coll, fld, fields in ((DISPUTE_CASES, "updated_at", ("user_id", "status", "revision", "last_event_id")),
                              (CREDIT_REPORTS, "created_at", ("user_id", "bureau", "version")),
                              (ACTION_PLANS, "created_at", ("user_id", "version"))):
        for minutes in (0, 61, 600, 3 * 24 * 60):
            since = t_docs - timedelta(minutes=minutes, microseconds=1500)
            got = _norm(await fast._changed(coll, fld, since, fields), fields)
            assert got == _norm(await slow._changed(coll, fld, since, fields), fields), (coll, minutes)
            assert len(got) == sum(1 for n in range(DOCS) if n % 97 != 5 and 2 * n <= minutes), (coll, minutes)


async def test_each_range_walks_a_btree_index(jobs_db):
    store, report, _ = jobs_db
    ks, t0 = store.keyset, now()
    week = t0 - timedelta(days=7)
    # (collection, key, conditions, order, limit, whether a sort of the index's rows may follow)
    shapes = [(OUTBOX, "seq", [], "desc", 1, False),  # the next seq
              (OUTBOX, "seq", [Cond("seq", ">", EVENTS - 50)], "asc", 100, False),  # a consumer's batch
              (OUTBOX, "seq", [Cond("seq", "<=", 300)], "asc", 1000, False),  # prune's deletes
              # prune's watermark: the old events not pruned yet, by the `at` range index, then the highest seq
              (OUTBOX, "seq", [Cond("seq", "<=", EVENTS - 1), Cond("at", "<", week)], "desc", 1, True),
              (DISPUTE_CASES, "updated_at", [Cond("updated_at", ">=", t0 - timedelta(hours=1))], "asc", None, False),
              (CREDIT_REPORTS, "created_at", [Cond("created_at", ">=", t0 - timedelta(hours=1))], "asc", None, False),
              (ACTION_PLANS, "created_at", [Cond("created_at", ">=", t0 - timedelta(hours=1))], "asc", None, False)]
    for coll, key, where, order, limit, sort_ok in shapes:
        nodes = plan_nodes((await ks.explain_range(coll, key, where, order=order, limit=limit))["Plan"])
        kinds = [n["Node Type"] for n in nodes]
        assert not [k for k in kinds if "Seq" in k or ("Sort" in k and not sort_ok)], (coll, where, kinds)
        assert [n for n in nodes if n.get("Index Name")], (coll, where, kinds)
    # The jobs' deletes, one document at a time: `_id` (pushed down, on its GIN index) and the range again.
    for coll, flt in (("trace_observations", {"_id": {"$eq": "o7"}, "expires_at": {"$lt": t0}}),
                      (OUTBOX, {"_id": {"$eq": "dispute_cases:e7:1"}, "seq": {"$lte": 10}})):
        explain = await explain_find(store.db, coll, flt)
        assert explain["filterPushdown"] and [i for i in index_scans(explain) if i.endswith("__id_pd")], explain
    built = {r.index for r in report.created}
    assert any(r.field == "created_at (range)" and r.collection == ACTION_PLANS for r in report.rows)
    plans = plan_nodes((await ks.explain_range(ACTION_PLANS, "created_at", [Cond("created_at", ">=", t0)]))["Plan"])
    names = [n["Index Name"] for n in plans if n.get("Index Name")]
    assert len(names) == 1 and names[0].endswith("_created_at_range_pd") and names[0] in built


async def test_the_range_index_is_built_concurrently_and_kept(jobs_db):
    store, _, _ = jobs_db
    url = resolve().ferretdb_postgres_url.get_secret_value()
    conn = await asyncpg.connect(url)
    try:
        table = await conn.fetchval(f'SELECT _jsonb->>\'table\' FROM "{store.db.name}"._ferretdb_database_metadata '
                                    "WHERE _jsonb->>'_id' = $1", ACTION_PLANS)
        name = range_index_name(table, "created_at")
        row = await conn.fetchrow("SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) AS d FROM pg_index i "
                                  "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1", name)
        assert row is not None and row["indisvalid"] and "USING btree" in row["d"], row
        await conn.execute(f'DROP INDEX "{store.db.name}"."{name}"')  # an existing collection without it
    finally:
        await conn.close()
    assert index_sql(store.db.name, table, "created_at", btree=True).startswith(
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}"')  # reads and writes go on while it builds
    again = await PushdownIndexer(store.db, url).ensure()
    assert [(r.collection, r.status) for r in again.rows if r.index == name] == [(ACTION_PLANS, "created")]
    assert all(r.status == "present" for r in (await PushdownIndexer(store.db, url).ensure()).rows)


async def test_a_lost_event_is_reemitted_through_the_index(open_reader_store):
    store = await open_reader_store("reconcile")
    db = store.db
    at = now()
    await db[DISPUTE_CASES].insert_one({"_id": "lost", "user_id": uid(), "status": "submitted_to_bureau",
                                        "revision": 2, "updated_at": at, "last_event_id": dispute_event_id("lost", 2)})
    await db[CREDIT_REPORTS].insert_one({"_id": "rep", "user_id": uid(), "bureau": "experian", "version": 3,
                                         "created_at": at})
    await db[ACTION_PLANS].insert_one({"_id": "plan", "user_id": uid(), "version": 1, "created_at": at})
    outbox = Outbox(db)
    assert outbox.keyset is store.keyset
    await outbox.emit(CREDIT_REPORTS, "insert", "rep", None, {}, event_id=report_event_id("rep"))  # not lost
    assert await outbox.reconcile(at - timedelta(minutes=5)) == 2
    events = {d["_id"]: d async for d in db[OUTBOX].find({})}
    assert events[dispute_event_id("lost", 2)]["data"] == {"status": "submitted_to_bureau", "revision": 2,
                                                          "reconciled": True}
    assert events[plan_event_id("plan")]["seq"] == 3 and set(events) == {
        dispute_event_id("lost", 2), report_event_id("rep"), plan_event_id("plan")}
    assert await outbox.reconcile(at - timedelta(minutes=5)) == 0  # idempotent
    assert await outbox.reconcile(at + timedelta(seconds=1)) == 0  # outside the window


async def test_prune_and_retention_delete_through_the_index(open_reader_store):
    store = await open_reader_store("prune")
    db, t0 = store.db, now()
    outbox = Outbox(db)
    await OutboxConsumer(db, "reader").register()
    for n in range(1, 31):
        await outbox.emit(DISPUTE_CASES, "update", f"d{n}", None, {}, event_id=f"x:{n}")
    await db[OUTBOX].update_many({"seq": {"$lte": 20}}, {"$set": {"at": t0 - timedelta(days=9)}})
    assert await Outbox(db, use_keyset=False).prune(dry_run=True) == 0  # the consumer has read nothing
    await db["cdc_checkpoints"].update_one({"_id": "outbox:reader"}, {"$set": {"seq": 25}})
    assert await outbox.prune(dry_run=True) == await Outbox(db, use_keyset=False).prune(dry_run=True) == 20
    lag = await MongoStats(store).outbox_lag(at=t0)
    assert [(c.consumer, c.checkpoint, c.newest, c.events) for c in lag] == [("reader", 25, 30, 5)]
    assert lag == await MongoStats(store).outbox_lag(at=t0, use_keyset=False)
    assert (await purge_expired(db, at=t0))["outbox_events"] == 20
    assert await outbox.pruned_upto() == 20
    assert sorted([d["seq"] async for d in db[OUTBOX].find({})]) == list(range(21, 31))
    consumer = OutboxConsumer(db, "reader")
    assert [e.seq for e in await consumer.poll()] == list(range(26, 31))
    # Expired traces' observations (no TTL on FerretDB): only what expired goes, compared with the old count.
    obs = [{"_id": f"o{n}", "user_id": uid(), "trace_id": "t", "expires_at": t0 + timedelta(hours=n - 10)}
           for n in range(20)] + [{"_id": "s", "user_id": uid(), "trace_id": "t", "expires_at": "2000-01-01"}]
    await db["trace_observations"].insert_many(obs)
    counts = await purge_expired(db, at=t0, collections=("trace_observations",), outbox=False, dry_run=True)
    assert counts == await purge_expired(db, at=t0, collections=("trace_observations",), outbox=False,
                                         dry_run=True, use_keyset=False) == {"trace_observations": 10}
    assert await purge_expired(db, at=t0, collections=("trace_observations",), outbox=False) == {
        "trace_observations": 10}
    left = sorted([d["_id"] async for d in db["trace_observations"].find({})])
    assert left == sorted(["s", *(f"o{n}" for n in range(10, 20))])
    # An ObjectId `_id` (a document written without one): the ids the index gives are strings, so the find does it.
    oid = (await db["trace_observations"].insert_one({"trace_id": "t", "expires_at": t0 - timedelta(hours=1)})
           ).inserted_id
    with pytest.raises(NotServed):
        await store.keyset.range("trace_observations", "expires_at", [Cond("expires_at", "<", t0)])
    assert await purge_expired(db, at=t0, collections=("trace_observations",), outbox=False) == {
        "trace_observations": 1}
    assert await db["trace_observations"].count_documents({"_id": oid}) == 0


async def test_a_gap_is_still_waited_on_then_skipped(open_reader_store):
    store = await open_reader_store("gap")
    db = store.db
    outbox = Outbox(db)
    await outbox.emit(DISPUTE_CASES, "update", "a", None, {}, event_id="a")
    await db[OUTBOX].insert_one({"_id": "c", "topic": DISPUTE_CASES, "op": "update", "document_id": "c",
                                 "user_id": None, "at": now(), "seq": 3, "data": {}})  # seq 2 not written yet
    consumer = OutboxConsumer(db, "gap", gap_timeout=0.5)
    assert [e.event_id for e in await consumer.poll()] == ["a"]
    await consumer.commit()
    assert await consumer.poll() == []
    await asyncio.sleep(0.7)
    assert [e.event_id for e in await consumer.poll()] == ["c"]


async def test_concurrent_emits_through_the_index_get_distinct_contiguous_seqs(open_reader_store, mongo_url):
    from pymongo import AsyncMongoClient

    store = await open_reader_store("emit")
    other = AsyncMongoClient(mongo_url, tz_aware=True, retryWrites=False)  # a second "process"
    try:
        # Two processes reading the next seq through PostgreSQL's index, one through the find: the unique index
        # on seq still arbitrates.
        outboxes = [Outbox(store.db), Outbox(other[store.db.name], keyset=store.keyset),
                    Outbox(other[store.db.name], use_keyset=False)]
        assert outboxes[0].keyset is not None and outboxes[2].keyset is None
        events = await asyncio.gather(*(outboxes[i % 3].emit(DISPUTE_CASES, "update", f"d{i}", None, {},
                                                             event_id=f"c:{i}") for i in range(45)))
    finally:
        await other.close()
    assert sorted(e.seq for e in events) == list(range(1, 46))
    consumer = OutboxConsumer(store.db, "all")
    assert [e.seq for e in await consumer.poll()] == list(range(1, 46))


async def test_age_based_retention_counts_and_deletes_through_the_index(open_reader_store):
    """`kredete retention`'s age-based datasets (predictions, feedback; no `expires_at`): the old documents are
    counted on the `created_at` btree and deleted by `_id`, the same ones the old find counted."""
    from stores.mongo.collections import FEEDBACK_SIGNALS, MODEL_PREDICTIONS
    from stores.mongo.retention import count_older, purge_older

    store = await open_reader_store("age")
    db, t0 = store.db, now()
    url = resolve().ferretdb_postgres_url
    if url is None:
        pytest.skip("KREDETE_FERRETDB_POSTGRES_URL is not set")
    cutoff = t0 - timedelta(days=730)
    for coll in (MODEL_PREDICTIONS, FEEDBACK_SIGNALS):
        # 1,500 documents over four years (a few with a string date: never in a date range), half before the cutoff
        await db[coll].insert_many([{"_id": f"{coll[0]}{n}", "user_id": uid(), "created_at":
                                     (t0 - timedelta(days=n)).isoformat() if n % 97 == 5 else t0 - timedelta(days=n)}
                                    for n in range(0, 1460)])
    await PushdownIndexer(db, url.get_secret_value()).ensure()
    await _analyze(store)
    expected = sum(1 for n in range(1460) if n % 97 != 5 and t0 - timedelta(days=n) < cutoff)
    for coll in (MODEL_PREDICTIONS, FEEDBACK_SIGNALS):
        nodes = plan_nodes((await store.keyset.explain_range(coll, "created_at",
                                                             [Cond("created_at", "<", cutoff)]))["Plan"])
        assert [n for n in nodes if n.get("Index Name")] and not [n for n in nodes if "Seq" in n["Node Type"]], (
            coll, [n["Node Type"] for n in nodes])
        explain = await explain_find(db, coll, {"_id": {"$eq": f"{coll[0]}7"}, "created_at": {"$lt": cutoff}})
        assert explain["filterPushdown"] and [i for i in index_scans(explain) if i.endswith("__id_pd")], explain
        assert await count_older(db, coll, "created_at", cutoff) == await count_older(
            db, coll, "created_at", cutoff, use_keyset=False) == expected
        assert await purge_older(db, coll, "created_at", cutoff) == expected
        assert await count_older(db, coll, "created_at", cutoff, use_keyset=False) == 0
        assert await db[coll].count_documents({}) == 1460 - expected
