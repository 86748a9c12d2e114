"""The support agents' dispute queue on FerretDB: pages, with each case's head, from PostgreSQL's btree index.

FerretDB sorts in memory after decoding every match, so the queue (every user's disputes, newest-updated first)
walks FerretDB's own `updated` / `status_updated` btree indexes in PostgreSQL for the page's positions and the
listed fields of those rows (`stores.mongo.backend_keyset`), in one statement. These tests hold that path to
the find it replaces (same pages, cursors and order, ties on `updated_at` included), check the plan (an index
scan that stops at the page, no sort), freshness after a write, the tool's scope rule on top of it, and the
fallback when the backend has no table for the collection.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pymongo import AsyncMongoClient, monitoring

from agent_tools.context import ToolContext
from agent_tools.registry import BY_NAME
from agent_tools.repositories import Repositories
from agent_tools.tools import disputes as i_disputes
from config.settings import resolve
from guards.access import AccessSources
from guards.call import new_call_state
from guards.errors import Forbidden
from guards.principal import Principal, Role
from stores.errors import InvalidData
from stores.mongo.backend_keyset import BackendKeyset, Position
from stores.mongo.client import MongoStore
from stores.mongo.credit import DisputeRepository
from stores.mongo.documents import Dispute, DisputeHead, DisputeStatus, StatusChange
from stores.mongo.pushdown import SUFFIX, ensure_pushdown_indexes, explain_find, index_scans
from stores.mongo.pushdown import plan_nodes as _nodes
from stores.registry import Stores, build
from stores.scope import RowScope
from tests.integration.mongo.factories import uid

USERS = 12
PER_USER = 10  # 120 cases over 8 distinct updated_at values: the `_id` tie-break decides most of the order
FILLER = 3000  # resolved cases of other users, so PostgreSQL plans the table as the large one it becomes
STATUSES = [s for s in DisputeStatus]


class Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.finds: list[tuple[dict, str | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command["find"] == "dispute_cases":
            self.finds.append((dict(event.command.get("filter", {})), event.command.get("comment")))

    def succeeded(self, event) -> None: ...

    def failed(self, event) -> None: ...


def _case(user: str, k: int, at: datetime, status: DisputeStatus) -> Dispute:
    return Dispute(user_id=user, report_id=uid(), bureau="crc_ng", reason="incorrect_balance", status=status,
                   status_history=[StatusChange(from_status=None, to_status=status, at=at)],
                   opened_at=at - timedelta(days=3), updated_at=at, revision=1)


@pytest.fixture(scope="module")
async def queue_db(open_reader_store):
    url = resolve().ferretdb_postgres_url
    if url is None:
        pytest.skip("KREDETE_FERRETDB_POSTGRES_URL is not set (an external MongoDB-wire server)")
    # the pages are read as the reader role, like the MCP server does, from a database (a schema and tables)
    # FerretDB makes after the role's grants: its default privileges must reach them
    store = await open_reader_store("q")
    base = datetime(2026, 11, 1, tzinfo=UTC)
    users = [uid() for _ in range(USERS)]
    cases = [_case(u, k, base + timedelta(hours=(i * 7 + k * 5) % 8), STATUSES[(i + k) % len(STATUSES)])
             for i, u in enumerate(users) for k in range(PER_USER)]
    filler = [_case(uid(), 0, base - timedelta(days=30 + i % 300), DisputeStatus.RESOLVED) for i in range(FILLER)]
    for i in range(0, len(filler), 500):
        await store.db["dispute_cases"].insert_many([d.to_mongo() for d in filler[i:i + 500]])
    await store.db["dispute_cases"].insert_many([d.to_mongo() for d in cases])
    await ensure_pushdown_indexes(store.db, url.get_secret_value())  # `_id` for the point reads; ANALYZE
    return store, users, cases


def _order(cases: list[Dispute]) -> list[str]:
    return [d.id for d in sorted(cases, key=lambda d: (d.updated_at, d.id), reverse=True)]


async def _walk(repo: DisputeRepository, status: str | None, limit: int) -> tuple[list[str], list[str | None]]:
    ids, cursors, cursor = [], [], None
    while True:
        page, cursor = await repo.queue(RowScope.everyone(), status=status, cursor=cursor, limit=limit)
        ids += [d.id for d in page]
        cursors.append(cursor)
        if cursor is None:
            return ids, cursors
        assert len(page) == limit


@pytest.fixture
async def recorded(mongo_url, queue_db):
    store, _, _ = queue_db
    rec = Finds()
    client = AsyncMongoClient(mongo_url, event_listeners=[rec], tz_aware=True, retryWrites=False)
    yield rec, DisputeRepository(client[store.db.name], keyset=store.keyset)
    await client.close()


@pytest.mark.parametrize("status", [None, "opened", "under_review"])
async def test_keyset_pages_equal_the_sorted_find_page_for_page(queue_db, recorded, status):
    store, _, cases = queue_db
    rec, keyset_repo = recorded
    find_repo = DisputeRepository(store.db)  # no backend: FerretDB's in-memory sort, the reference
    assert find_repo.keyset is None and keyset_repo.keyset is not None
    if status is None:  # the first pages only: the find reads all 3,120 cases for each
        got, cur = await keyset_repo.queue(RowScope.everyone(), limit=15)
        ref, ref_cur = await find_repo.queue(RowScope.everyone(), limit=15)
        assert [d.id for d in got] == [d.id for d in ref] == _order(cases)[:15]
        got2, _ = await keyset_repo.queue(RowScope.everyone(), cursor=cur, limit=15)
        ref2, _ = await find_repo.queue(RowScope.everyone(), cursor=ref_cur, limit=15)
        assert cur == ref_cur and [d.id for d in got2] == [d.id for d in ref2] == _order(cases)[15:30]
        assert [d.model_dump() for d in got] == [d.model_dump() for d in ref]  # the heads, as stored
        assert all(isinstance(d, DisputeHead) for d in got + ref)
    else:
        rec.finds.clear()
        ids, cursors = await _walk(keyset_repo, status, limit=7)
        ref_ids, ref_cursors = await _walk(find_repo, status, limit=7)
        expected = _order([d for d in cases if d.status.value == status])
        assert ids == ref_ids == expected and cursors == ref_cursors
        assert len(set(ids)) == len(ids) and len(expected) >= 14  # several pages, no repeats
        # FerretDB was not asked at all: the heads came with the page, from its table.
        assert rec.finds == []


async def test_a_page_walks_ferretdbs_btree_index_and_each_case_is_a_pushed_down_point_read(queue_db):
    store, _, cases = queue_db
    keyset = store.keyset
    assert keyset is not None
    newest = sorted(cases, key=lambda d: (d.updated_at, d.id), reverse=True)[3]
    after = Position(int(newest.updated_at.timestamp() * 1000), newest.id)
    shapes = [({}, None, "_updated_"), ({}, after, "_updated_"), ({"status": "opened"}, None, "_status_updated_"),
              ({"status": "opened"}, after, "_status_updated_")]
    for eq, aft, index in shapes:
        plan = (await keyset.explain("dispute_cases", "updated_at", eq=eq, after=aft, limit=21))["Plan"]
        nodes = [n["Node Type"] for n in _nodes(plan)]
        scans = [n.get("Index Name", "") for n in _nodes(plan) if n.get("Index Name")]
        what = f"eq={eq} after={aft}: {nodes} {scans}"
        assert plan["Node Type"] == "Limit" and not [n for n in nodes if "Sort" in n or "Seq" in n], what
        assert len(scans) == 1 and index in scans[0], what  # FerretDB's index for our `updated` declaration
    point = await explain_find(store.db, "dispute_cases", {"_id": {"$eq": newest.id}})
    assert point["filterPushdown"] and [s for s in index_scans(point) if s.endswith(SUFFIX)]


async def test_the_queue_is_fresh_a_transitioned_case_is_first_with_its_new_status(queue_db):
    store, users, _ = queue_db
    repo = DisputeRepository(store)
    assert repo.keyset is not None
    created = await repo.create(_case(users[0], 99, datetime.now(UTC), DisputeStatus.OPENED).model_copy(
        update={"status_history": []}))
    page, _ = await repo.queue(RowScope.everyone(), limit=3)
    assert page[0].id == created.id and page[0].status is DisputeStatus.OPENED
    moved = await repo.transition(created.id, "submitted_to_bureau", note="sent")
    page, _ = await repo.queue(RowScope.everyone(), limit=3)
    assert page[0].id == created.id and page[0].status.value == "submitted_to_bureau"
    assert page[0].updated_at == moved.updated_at
    opened, _ = await repo.queue(RowScope.everyone(), status="opened", limit=100)
    assert created.id not in {d.id for d in opened}
    submitted, _ = await repo.queue(RowScope.everyone(), status="submitted_to_bureau", limit=1)
    assert [d.id for d in submitted] == [created.id]


class _NoAssignments:
    async def users_assigned_to(self, subject: str) -> list[UUID]:
        return []


def _principal(role: Role, user: str | None = None) -> Principal:
    return Principal(subject=f"{role.value}-q", role=role, user_id=UUID(user) if user else None, token_id="t",
                     expires_at=2**31, issuer="test")


async def _tool(store: MongoStore, principal: Principal, args: i_disputes.ListDisputesInput) -> dict:
    spec = BY_NAME["list_disputes"]
    scope = await spec.scope.resolve(principal, args, AccessSources(assignments=_NoAssignments(), min_cell_size=5))
    ctx = ToolContext(principal=principal, scope=scope, repos=Repositories(Stores(mongo=store)), settings=resolve(),
                      call=new_call_state("list_disputes", {}))
    return (await spec.handler(args, ctx)).model_dump(mode="json")


async def test_the_tool_gives_staff_the_queue_and_a_customer_only_their_own(queue_db):
    store, users, _ = queue_db
    agent = _principal(Role.SUPPORT_AGENT)
    assert Repositories(Stores(mongo=store)).disputes.keyset is not None
    server_mongo = build(("mongo",), settings=resolve()).mongo  # as the MCP server builds its adapters
    assert server_mongo is not None and server_mongo.keyset is not None
    assert server_mongo.keyset.db_name == resolve().mongo_db
    assert "//ferretdb_reader:" in server_mongo.keyset._url  # never FerretDB's owner role
    everyone = DisputeRepository(store)
    expected, _ = await everyone.queue(RowScope.everyone(), limit=20)
    out = await _tool(store, agent, i_disputes.ListDisputesInput())
    assert [d["dispute_id"] for d in out["disputes"]] == [d.id for d in expected]
    assert len({d["user_id"] for d in out["disputes"]}) > 1 and out["next_cursor"]
    nxt = await _tool(store, agent, i_disputes.ListDisputesInput(cursor=out["next_cursor"]))
    assert not {d["dispute_id"] for d in nxt["disputes"]} & {d["dispute_id"] for d in out["disputes"]}

    customer = users[3]
    with pytest.raises(InvalidData):  # the repository too: the queue is for all-users scopes only
        await everyone.queue(RowScope.users(customer))
    mine = await _tool(store, _principal(Role.CUSTOMER, customer), i_disputes.ListDisputesInput(limit=100))
    assert len(mine["disputes"]) >= PER_USER and {d["user_id"] for d in mine["disputes"]} == {customer}
    with pytest.raises(Forbidden):  # another user's disputes, named: refused by the scope rule
        await _tool(store, _principal(Role.CUSTOMER, customer), i_disputes.ListDisputesInput(user_id=UUID(users[4])))
    with pytest.raises(Exception, match="cursor"):  # the staff queue's cursor does not open anything to a customer
        await _tool(store, _principal(Role.CUSTOMER, customer),
                    i_disputes.ListDisputesInput(cursor=out["next_cursor"]))


async def test_without_the_collection_in_the_backend_the_find_answers(queue_db, mongo_url):
    store, _, _ = queue_db
    other = await MongoStore(mongo_url, f"kredete_test_q_{secrets.token_hex(4)}").connect()
    try:
        assert store.keyset is not None
        # FerretDB keeps no table for this database yet: the keyset says so and the repository reads by find.
        repo = DisputeRepository(other, keyset=BackendKeyset(store.keyset._url, other.db.name))
        assert await repo.queue(RowScope.everyone()) == ([], None)
        await other.db["dispute_cases"].insert_one(_case(uid(), 0, datetime.now(UTC), DisputeStatus.OPENED).to_mongo())
        page, nxt = await repo.queue(RowScope.everyone())
        assert len(page) == 1 and nxt is None
        await repo.keyset.close()
    finally:
        await other.drop_database()
        await other.close()


async def test_the_reader_role_reads_the_tables_and_can_change_nothing(queue_db):
    """The role the agent-facing adapters read FerretDB's tables with: SELECT only, read-only by default, and
    still refused a write or a DDL statement inside a transaction it declares read-write."""
    import asyncpg

    store, _, cases = queue_db
    conn = await asyncpg.connect(resolve().ferretdb_reader_url.get_secret_value())
    try:
        schema = store.db.name
        table = await conn.fetchval(f'SELECT _jsonb ->> \'table\' FROM "{schema}"._ferretdb_database_metadata '
                                    "WHERE _jsonb ->> '_id' = 'dispute_cases'")
        assert table
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"') >= len(cases)
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute(f'DELETE FROM "{schema}"."{table}"')
        for statement in (f'DELETE FROM "{schema}"."{table}"', f'CREATE TABLE "{schema}".intruder (a int)',
                          f'DROP TABLE "{schema}"."{table}"'):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction(readonly=False):
                    await conn.execute("SET TRANSACTION READ WRITE")
                    await conn.execute(statement)
    finally:
        await conn.close()
    assert await store.db["dispute_cases"].count_documents({}) >= len(cases)
