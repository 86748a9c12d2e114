"""Seeding the credit store: consistent with the users, deterministic, idempotent, PII encrypted."""

from __future__ import annotations

import uuid

import pytest

from config.settings import resolve
from kredete.seed.mongo import INJECTIONS, SEEDED, seed_credit_store_async
from stores.mongo.credit import CreditReportRepository, ScoreHistoryRepository
from stores.mongo.encryption import MASK
from stores.scope import RowScope

COUNTRIES = ["NG", "GH", "KE", "US", "GB"]


def users(n: int) -> list[dict]:
    return [{"user_id": uuid.uuid5(uuid.NAMESPACE_DNS, f"seed-test-{i}"), "full_name": f"Ada Obi{i}",
             "country": COUNTRIES[i % 5], "bvn": f"221{i:08d}", "phone": f"0803{i:07d}",
             "date_of_birth": "1990-05-01"} for i in range(n)]


@pytest.fixture(scope="module")
async def seeded(db):
    people = users(40)
    first = await seed_credit_store_async(resolve(), people, 7, db=db)
    return people, first


async def test_seed_is_consistent_and_encrypted(seeded, db):
    people, first = seeded
    ids = {str(p["user_id"]) for p in people}
    assert set(await db.credit_reports.distinct("user_id")) == ids
    assert set(await db.score_history.distinct("user_id")) == ids
    assert first["score_history"] == 24 * 40
    assert first["dispute_cases"] > 0 and first["action_plans"] >= 40
    user = str(people[0]["user_id"])
    rep = await CreditReportRepository(db).latest(RowScope.users(user), user)
    assert rep.subject.bvn == MASK and rep.country == "NG"
    raw = await db.credit_reports.find_one({"user_id": user})
    assert "22100000000" not in repr(raw)
    series = await ScoreHistoryRepository(db).series(RowScope.users(user), user)
    assert len(series) == 24 and series[0].as_of < series[-1].as_of
    cases = await db.dispute_cases.find({}).to_list(None)  # whole cases (the queue lists only their heads)
    texts = repr([(c.get("notes"), [h.get("note") for h in c.get("status_history", [])]) for c in cases])
    assert any(inj in texts for inj in INJECTIONS)
    assert "0803" in texts  # PII in free text, for the redaction tests of the MCP server


async def test_seed_is_idempotent_and_deterministic(seeded, db):
    people, _ = seeded
    before = {c: await db[c].count_documents({}) for c in ("credit_reports", "dispute_cases", "score_history")}
    again = await seed_credit_store_async(resolve(), people, 7, db=db)
    assert set(again.values()) == {0}
    after = {c: await db[c].count_documents({}) for c in before}
    assert before == after


async def test_an_interrupted_seed_resumes_after_its_finished_batches(mongo_url):
    """Cancel a seed once some batches are checkpointed; the next run writes only the rest, and the result is
    the same documents as one uninterrupted seed."""
    import asyncio
    import secrets

    from stores.mongo.client import MongoStore

    people = users(30)
    store = await MongoStore(mongo_url, f"kredete_test_resume_{secrets.token_hex(4)}").connect()
    whole = await MongoStore(mongo_url, f"kredete_test_whole_{secrets.token_hex(4)}").connect()
    try:
        run = asyncio.create_task(seed_credit_store_async(resolve(), people, 7, db=store.db, batch_users=5,
                                                          parallel=1, pushdown=False))
        while await store.db.load_progress.count_documents({}) < 2:
            assert not run.done(), "the seed finished before it could be interrupted"
            await asyncio.sleep(0.05)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        finished = await store.db.load_progress.count_documents({})
        assert 2 <= finished < 6
        partial = await store.db.score_history.count_documents({})
        assert partial < 24 * 30
        rest = await seed_credit_store_async(resolve(), people, 7, db=store.db, batch_users=5, pushdown=False)
        assert rest["score_history"] <= 24 * 30 - 24 * 5 * finished  # finished batches were not re-sent
        assert await store.db.load_progress.count_documents({}) == 6
        # the checkpoints name no user: they outlive an erasure of any of them
        marks = str(await store.db.load_progress.find({}).to_list(None))
        assert not [p for p in people if str(p["user_id"]) in marks]
        # built in this process rather than in worker processes: the same documents
        await seed_credit_store_async(resolve(), people, 7, db=whole.db, batch_users=5, pushdown=False, workers=0)
        for coll in ("credit_reports", "score_history", "dispute_cases", "action_plans", "bureau_responses",
                     "credit_factors"):
            ids = sorted(d["_id"] for d in await store.db[coll].find({}, {"_id": 1}).to_list(None))
            assert ids == sorted(d["_id"] for d in await whole.db[coll].find({}, {"_id": 1}).to_list(None)), coll
    finally:
        for s in (store, whole):
            await s.drop_database()
            await s.close()


async def test_a_seed_makes_its_indexes_before_the_load_and_ends_with_every_one(mongo_url):
    """A seed into a new database: FerretDB's indexes and (on its PostgreSQL backend) the pushdown ones exist
    once it returns, made before the load (a later `ensure` finds them all present)."""
    import secrets

    from stores.mongo.client import MongoStore
    from stores.mongo.collections import SPECS
    from stores.mongo.pushdown import Backend, PushdownIndexer, detect_backend

    backend_url = resolve().ferretdb_postgres_url
    people = users(12)
    store = await MongoStore(mongo_url, f"kredete_test_idx_{secrets.token_hex(4)}").connect()
    try:
        timings: dict[str, float] = {}
        counts = await seed_credit_store_async(resolve(), people, 7, db=store.db, batch_users=4, timings=timings)
        assert counts["score_history"] == 24 * 12 and set(timings) == {"indexes_s", "load_s"}
        for spec in SPECS:
            if spec.name in SEEDED:
                have = set(await store.db[spec.name].index_information())
                assert {m.document["name"] for m in spec.indexes} <= have, spec.name
        if await detect_backend(store.db) is Backend.FERRETDB_POSTGRESQL and backend_url is not None:
            report = await PushdownIndexer(store.db, backend_url.get_secret_value()).ensure()
            seeded = [r for r in report.rows if r.collection in SEEDED]
            assert seeded and {r.status for r in seeded} == {"present"}
            assert all(r.size_bytes > 0 for r in seeded)
    finally:
        await store.drop_database()
        await store.close()
