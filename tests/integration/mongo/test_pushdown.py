"""Every credit-store repository query is pushed down to a PostgreSQL index on FerretDB.

The queries are the ones the repositories really send (captured by a command listener on a real connection);
each is explained on the server: FerretDB must report `filterPushdown` and PostgreSQL's plan must scan one
of the pushdown indexes (`stores.mongo.pushdown`). Without those indexes the same queries are sequential
scans. The index builds are CONCURRENT: a writer holding the table does not stop reads or writes through
FerretDB while a build waits for it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pymongo import AsyncMongoClient, monitoring

from config.settings import resolve
from stores.errors import Conflict
from stores.mongo.cdc import Outbox, dispute_event_id
from stores.mongo.client import MongoStore
from stores.mongo.collections import SPECS
from stores.mongo.credit import (
    ActionPlanRepository,
    BureauResponseRepository,
    CreditFactorRepository,
    CreditReportRepository,
    DisputeRepository,
    ScoreHistoryRepository,
)
from stores.mongo.documents import ActionPlan, BureauResponse, EmbeddingRecord, ScorePoint, now
from stores.mongo.embeddings import EmbeddingRepository
from stores.mongo.pushdown import (
    SUFFIX,
    Backend,
    PushdownIndexer,
    detect_backend,
    ensure_pushdown_indexes,
    explain_find,
    index_name,
    index_scans,
)
from stores.scope import RowScope
from tests.integration.mongo.factories import report

USERS = 300  # enough rows that PostgreSQL prices an index scan below a sequential one
OPS = {"find": "filter", "count": "query", "distinct": "query"}


class Recorder(monitoring.CommandListener):
    """(collection, filter) of every read, update and delete sent."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        cmd, name = event.command, event.command_name
        if name in OPS and OPS[name] in cmd:
            self.queries.append((name, cmd[name], dict(cmd[OPS[name]])))
        elif name == "aggregate" and cmd.get("pipeline") and "$match" in cmd["pipeline"][0]:
            self.queries.append((name, cmd[name], dict(cmd["pipeline"][0]["$match"])))
        elif name in ("update", "delete"):
            key = "updates" if name == "update" else "deletes"
            self.queries += [(name, cmd[name], dict(op["q"])) for op in cmd[key]]

    def succeeded(self, event) -> None: ...

    def failed(self, event) -> None: ...


@pytest.fixture(scope="module")
def backend_url(mongo_url) -> str:
    url = resolve().ferretdb_postgres_url
    if url is None:
        pytest.skip("KREDETE_FERRETDB_POSTGRES_URL is not set (an external MongoDB-wire server)")
    return url.get_secret_value()


@pytest.fixture(scope="module")
async def seeded(mongo_url, backend_url):
    """A database with USERS seeded users (as `kredete seed` makes them), no pushdown index yet."""
    from rich.console import Console

    from kredete.seed.mongo import seed_credit_store_async
    from kredete.seed.people import person

    store = await MongoStore(mongo_url, f"kredete_test_pd_{secrets.token_hex(4)}").connect()
    users = [person(7, i) for i in range(USERS)]
    await seed_credit_store_async(resolve(), users, 7, Console(quiet=True), db=store.db, pushdown=False)
    await _fill_service_collections(store.db)
    if await detect_backend(store.db) is not Backend.FERRETDB_POSTGRESQL:
        await store.drop_database()
        pytest.skip("not FerretDB on PostgreSQL: MongoDB's own indexes serve these filters")
    yield store, [str(u.user_id) for u in users]
    await store.drop_database()
    await store.close()


async def _fill_service_collections(db, n: int = 3000) -> None:
    """The service collections the seeder leaves empty hold what a running system accumulates, so PostgreSQL
    plans them as the large tables they become (an empty table is scanned whatever its indexes)."""
    now = datetime.now(UTC)
    await db["embeddings"].insert_many([
        {"_id": secrets.token_hex(32), "user_id": str(uuid.uuid4()), "source_type": "credit_report",
         "source_id": str(uuid.uuid4()), "chunk_index": i % 4, "vector_id": f"v{i}", "index_name": "kredete-chunks",
         "model": "m", "dim": 384, "text_sha256": "0" * 64, "created_at": now} for i in range(n)])
    await db["outbox_events"].insert_many([
        {"_id": f"filler:{i}", "topic": "dispute_cases", "op": "update", "document_id": str(uuid.uuid4()),
         "user_id": None, "at": now, "seq": i + 1, "data": {}} for i in range(n)])
    await db["write_claims"].insert_many([
        {"_id": f"filler:{i}", "set": {}, "push": {}, "event": {}, "created_at": now,
         "expires_at": now + timedelta(days=1)} for i in range(n)])


@pytest.fixture
async def recorded(mongo_url, seeded):
    store, _ = seeded
    rec = Recorder()
    client = AsyncMongoClient(mongo_url, event_listeners=[rec], tz_aware=True, retryWrites=False)
    yield rec, client[store.db.name]
    await client.close()


async def _exercise(db, user: str, encryption) -> None:
    """Every repository read and service-side write of the credit store, once."""
    scope = RowScope.users(user)
    reports = CreditReportRepository(db, encryption=encryption)
    latest = await reports.latest(scope, user)
    await reports.latest(scope, user, bureau=str(latest.bureau))
    await reports.get_version(scope, user, 1)
    await reports.as_of(scope, user, datetime.now(UTC))
    await reports.list_versions(scope, user)
    await reports.add_version(report(user, bureau=str(latest.bureau)))  # reads the previous version first
    scores = ScoreHistoryRepository(db)
    await scores.series(scope, user)
    await scores.series(scope, user, datetime.now(UTC) - timedelta(days=365), datetime.now(UTC),
                        bureau=str(latest.bureau))
    await scores.record(ScorePoint(user_id=user, bureau=latest.bureau, score=640, as_of=datetime.now(UTC)))
    disputes = DisputeRepository(db, encryption=encryption)
    page, cursor = await disputes.list(scope, user_id=user, limit=1)
    assert page and cursor, "the seeded user has two disputes"
    await disputes.list(scope, user_id=user, cursor=cursor, limit=1)
    await disputes.list(scope, user_id=user, status=page[0].status.value)
    await disputes.list(RowScope.everyone(), user_id=user)
    await disputes.get(scope, user, page[0].id)
    from tests.integration.mongo.factories import dispute

    new = await disputes.create(dispute(user, latest.id))
    await disputes.transition(new.id, "submitted_to_bureau", note="sent")
    # A second emit of one event is answered by looking its id up.
    outbox = Outbox(db)
    for _ in range(2):
        await outbox.emit("dispute_cases", "update", new.id, user, {}, event_id=f"probe:{new.id}")
    responses = BureauResponseRepository(db, encryption=encryption)
    await responses.add(BureauResponse(user_id=user, dispute_id=new.id, bureau=latest.bureau,
                                       received_at=datetime.now(UTC), outcome="verified", body="verified"), disputes)
    await responses.for_dispute(scope, user, new.id)
    plans = ActionPlanRepository(db)
    await plans.latest(scope, user)
    await plans.list_versions(scope, user)
    await plans.add_version(ActionPlan(user_id=user))
    await CreditFactorRepository(db).for_user(scope, user)
    await CreditFactorRepository(db).for_user(scope, user, report_id=latest.id)
    embeddings = EmbeddingRepository(db)
    rec = EmbeddingRecord(user_id=user, source_type="credit_report", source_id=latest.id, chunk_index=0,
                          vector_id=f"credit_report:{latest.id}#0", index_name="kredete-chunks", model="m", dim=384,
                          text_sha256="0" * 64)
    await embeddings.record([rec])
    await embeddings.for_source("credit_report", latest.id)
    await embeddings.prune([("credit_report", latest.id, 1)], model="m")
    await embeddings.delete_sources([f"credit_report:{latest.id}"], model="m")
    # Another writer's claim on the next revision: the transition looks that claim up and refuses.
    cur = await disputes.get(scope, user, new.id)
    await db["write_claims"].insert_one({"_id": dispute_event_id(new.id, cur.revision + 1), "set": {}, "push": {},
                                         "event": {}, "created_at": now(), "expires_at": now() + timedelta(days=1)})
    with pytest.raises(Conflict):
        await disputes.transition(new.id, "under_review")


async def _user_with_two_disputes(db, users: list[str]) -> str:
    for u in users:
        page, _ = await DisputeRepository(db).list(RowScope.users(u), user_id=u, limit=2)
        if len(page) == 2:
            return u
    raise AssertionError("no seeded user has two disputes")


#: Reads that are not per-record lookups, with why no index serves them on FerretDB 1.24.
NOT_POINT_READS = {
    ("outbox_events", "{}"): "the next event sequence is the newest event: FerretDB sorts in memory",
}


async def test_every_repository_query_uses_a_pushdown_index(seeded, recorded, backend_url, master_key):
    from stores.mongo.encryption import open_field_encryption

    store, users = seeded
    rec, db = recorded
    report_ = await ensure_pushdown_indexes(store.db, backend_url)
    assert report_.backend is Backend.FERRETDB_POSTGRESQL
    enc = await open_field_encryption(store.db, master_key)
    try:
        user = await _user_with_two_disputes(store.db, users)
        rec.queries.clear()
        await _exercise(db, user, enc)
    finally:
        await enc.close()
    seen: set[str] = set()
    checked = 0
    for op, coll, flt in rec.queries:
        if coll.startswith("__") or (coll, repr(flt)) in {(c, f) for c, f in NOT_POINT_READS}:
            continue
        explain = await explain_find(store.db, coll, flt)
        scans = index_scans(explain)
        what = f"{op} {coll} {flt}"
        assert explain["filterPushdown"], f"not pushed down: {what}"
        assert scans and all(s.endswith(SUFFIX) for s in scans), f"no pushdown index scan: {what}: {scans}"
        seen.add(coll)
        checked += 1
    assert checked >= 30
    assert seen >= {"credit_reports", "score_history", "dispute_cases", "action_plans", "bureau_responses",
                    "credit_factors", "embeddings", "write_claims", "outbox_events"}, seen


async def test_without_the_indexes_the_same_reads_scan_every_row(seeded, backend_url):
    store, users = seeded
    flt = {"user_id": {"$eq": users[5]}}
    none = [s.__class__(**{**s.__dict__, "pushdown": (), "ranges": ()}) for s in SPECS]
    dropped = await PushdownIndexer(store.db, backend_url, specs=none).ensure()
    assert {r.status for r in dropped.rows} == {"dropped"}
    before = await explain_find(store.db, "credit_reports", flt)
    assert before["filterPushdown"] and not index_scans(before)
    assert before["queryPlanner"]["Plan"]["Node Type"] == "Seq Scan"
    created = await ensure_pushdown_indexes(store.db, backend_url)
    assert created.created and all(r.status == "created" for r in created.rows)
    assert index_scans(await explain_find(store.db, "credit_reports", flt))
    again = await ensure_pushdown_indexes(store.db, backend_url)
    assert {r.status for r in again.rows} == {"present"}


def _superuser_url(backend_url: str) -> str:
    """The stack's superuser on FerretDB's database (to play another client holding the table)."""
    return resolve().postgres_url.get_secret_value().rsplit("/", 1)[0].split("?")[0] + "/" + \
        backend_url.rsplit("/", 1)[1]


async def _table(conn, schema: str, collection: str) -> str:
    return await conn.fetchval(f'SELECT _jsonb->>\'table\' FROM "{schema}"._ferretdb_database_metadata '
                               "WHERE _jsonb->>'_id' = $1", collection)


async def test_a_half_built_index_is_rebuilt(seeded, backend_url):
    """A CONCURRENTLY build that failed leaves an invalid index under the name: ensure replaces it."""
    store, users = seeded
    await ensure_pushdown_indexes(store.db, backend_url)
    conn = await asyncpg.connect(_superuser_url(backend_url))
    try:
        table = await _table(conn, store.db.name, "score_history")
        name = index_name(table, "user_id")
        await conn.execute(f'DROP INDEX "{store.db.name}"."{name}"')
        with pytest.raises(asyncpg.UniqueViolationError):  # a real failed concurrent build: duplicates
            await conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" ON "{store.db.name}"."{table}" '
                               "((_jsonb -> 'user_id'))")
        assert await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                                   f'"{store.db.name}"."{name}"') is False
        rep = await ensure_pushdown_indexes(store.db, backend_url)
        assert [r.status for r in rep.rows if r.index == name] == ["rebuilt"]
        assert await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                                   f'"{store.db.name}"."{name}"') is True
        assert index_scans(await explain_find(store.db, "score_history", {"user_id": {"$eq": users[1]}})) == [name]
    finally:
        await conn.close()


async def test_building_an_index_on_a_live_collection_blocks_neither_reads_nor_writes(seeded, backend_url):
    """A client holds a write lock on the table (an open transaction), so the build must wait for it; FerretDB
    reads and writes of that collection still go through meanwhile, and the build finishes once it commits."""
    store, users = seeded
    await ensure_pushdown_indexes(store.db, backend_url)
    conn = await asyncpg.connect(_superuser_url(backend_url))
    try:
        table = await _table(conn, store.db.name, "credit_factors")
        name = index_name(table, "user_id")
        await conn.execute(f'DROP INDEX "{store.db.name}"."{name}"')
        blocker = conn.transaction()
        await blocker.start()
        await conn.execute(f'LOCK TABLE "{store.db.name}"."{table}" IN ROW EXCLUSIVE MODE')
        build = asyncio.create_task(ensure_pushdown_indexes(store.db, backend_url))
        await asyncio.sleep(1.0)
        assert not build.done(), "the build did not wait for the writer"
        coll = store.db["credit_factors"]
        t0 = time.perf_counter()
        assert await coll.find_one({"user_id": {"$eq": users[2]}}) is not None
        await coll.insert_one({"_id": secrets.token_hex(8), "user_id": users[2], "probe": True})
        assert await coll.count_documents({"user_id": {"$eq": users[2]}, "probe": True}) == 1
        assert time.perf_counter() - t0 < 5.0
        assert not build.done()
        await blocker.commit()
        rep = await asyncio.wait_for(build, 60)
        assert [r.status for r in rep.rows if r.index == name] == ["created"]
        assert await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                                   f'"{store.db.name}"."{name}"') is True
    finally:
        await conn.close()


async def test_ferretdb_runs_the_reads_on_the_indexes_not_only_explain(seeded, backend_url):
    """`explain` plans a statement afresh; FerretDB's own reads are cached prepared statements whose key is a
    parameter (`_jsonb->$1 @> $2`), and a connection that ran one often enough without an index keeps its
    generic plan, a sequential scan, after the index exists, unless every execution is planned with its values
    (`plan_cache_mode`). The index's own scan counter says whether the real reads use it."""
    store, users = seeded
    await ensure_pushdown_indexes(store.db, backend_url)
    conn = await asyncpg.connect(_superuser_url(backend_url))
    try:
        table = await _table(conn, store.db.name, "credit_factors")
        name = index_name(table, "user_id")
        await conn.execute(f'DROP INDEX "{store.db.name}"."{name}"')
        factors = CreditFactorRepository(store.db)
        for u in users[40:52]:  # the same statement, repeatedly, while only a scan can serve it
            await factors.for_user(RowScope.users(u), u)
        await ensure_pushdown_indexes(store.db, backend_url)

        async def scans() -> int:
            return await conn.fetchval("SELECT coalesce(idx_scan, 0) FROM pg_stat_user_indexes "
                                       "WHERE schemaname = $1 AND indexrelname = $2", store.db.name, name)

        before = await scans()
        for u in users[60:80]:
            assert await factors.for_user(RowScope.users(u), u)
        for _ in range(40):  # a backend flushes its statistics within ~10 s of going idle
            if await scans() - before >= 20:
                break
            await asyncio.sleep(0.5)
        assert await scans() - before >= 20, "FerretDB's reads did not use the pushdown index"
    finally:
        await conn.close()
