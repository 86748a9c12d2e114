"""Transactions / users / audit / credit-report / dispute indexes: row mapping, scoped search, aggregations,
and the Postgres feeds against a real (scratch, migrated) database read through its replica."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from guards.redaction import redact
from retrieval.aggregations import dispute_outcomes, volume_by_corridor_per_day
from retrieval.errors import IndexNotBuilt, InvalidQuery, ScopeRefused
from retrieval.index_sync import DocIndexer
from retrieval.redactor import text_redactor
from retrieval.scoped_search import search_index
from retrieval.structured_docs import audit_doc, credit_report_index_doc
from stores.scope import AuditScope, RowScope

DAY = datetime(2025, 3, 1, tzinfo=UTC)
A, B = str(uuid.uuid4()), str(uuid.uuid4())


def tx(i: int, user: str, corridor: str, day: int, status: str = "completed", **kw) -> dict:
    currency = "USD" if corridor.startswith("US") else "GBP"
    if corridor == "US-NG" and i % 4 == 0:
        currency = "USDC"  # the same corridor, another source currency: never summed with USD
    return {"id": uuid.UUID(int=i), "user_id": user, "kind": "transfer", "status": status, "corridor_id": corridor,
            "currency": currency, "amount_minor": 10_000 + i, "fee_minor": 299,
            "dest_currency": "NGN", "dest_amount_minor": 15_000_000, "fx_rate": "1500.123456",
            "reference": f"KRD-{i:012d}", "counterparty_name": kw.get("cp", "Chinedu Okafor"),
            "description": kw.get("desc", "school fees for my sister, call 08031234567"),
            "created_at": DAY + timedelta(days=day, hours=i % 5), "updated_at": DAY + timedelta(days=day, hours=i % 5)}


@pytest.fixture(scope="module")
async def tx_index(search_store):
    idx = DocIndexer(search_store, "transactions", redact=redact)
    await idx.ensure()
    rows = [tx(i, A if i % 2 else B, "US-NG" if i % 3 else "GB-GH", i % 3) for i in range(1, 31)]
    rows.append({"id": "broken"})  # malformed: skipped, counted
    n, skipped = await idx.index_rows(rows)
    assert n == 30 and len(skipped) == 1
    await search_store.os.indices.refresh(index=idx.alias)
    return rows[:-1]


async def test_transaction_search_is_scoped_and_redacted(search_store, tx_index):
    mine = await search_index(search_store, "transactions", RowScope.users(A), text="school fees", k=100)
    assert mine and all(r["user_id"] == A for r in mine)
    assert all("08031234567" not in r["description"] for r in mine)
    assert await search_index(search_store, "transactions", RowScope.none(), k=100) == []
    staff = await search_index(search_store, "transactions", RowScope.everyone(), filters={"corridor": "GB-GH"},
                               k=100, sort=[{"created_at": "asc"}])
    assert len(staff) == 10 and all(r["corridor"] == "GB-GH" for r in staff)
    with pytest.raises(InvalidQuery, match="unknown field"):
        await search_index(search_store, "transactions", RowScope.everyone(), filters={"pan": "4111"})


async def test_volume_by_corridor_per_day_is_per_currency(search_store, tx_index):
    rows = await volume_by_corridor_per_day(search_store, DAY, DAY + timedelta(days=5))
    want: dict[tuple[str, str, str], list[int]] = {}
    for r in tx_index:
        key = (r["created_at"].date().isoformat(), r["corridor_id"], r["currency"])
        want.setdefault(key, []).append(r["amount_minor"])
    assert {(r["day"], r["corridor"], r["currency"]): (r["count"], r["amount_minor"]) for r in rows} == {
        k: (len(v), sum(v)) for k, v in want.items()}
    assert {r["currency"] for r in rows} == {"USD", "USDC", "GBP"}


async def test_dispute_outcomes(search_store):
    idx = DocIndexer(search_store, "disputes", redact=redact)
    await idx.ensure()
    opened = datetime(2025, 1, 1, tzinfo=UTC)

    def case(i: int, outcome: str | None) -> dict:
        d = {"_id": f"case-{i}", "user_id": A, "report_id": "r1", "bureau": "experian", "reason": "not_mine",
             "status": "resolved" if outcome else "under_review", "opened_at": opened,
             "resolved_at": opened + timedelta(days=10 + i) if outcome else None, "notes": "Ada called"}
        if outcome:
            d["bureau_responses"] = [{"response_id": f"x{i}", "received_at": opened, "outcome": outcome}]
        return d

    rows = [case(0, "deleted"), case(1, "deleted"), case(2, "verified"), case(3, None), {"_id": "bad"}]
    n, skipped = await idx.index_rows(rows)
    assert n == 4 and skipped == ["bad: failed validation"]
    await search_store.os.indices.refresh(index=idx.alias)
    out = await dispute_outcomes(search_store)
    assert out["by_outcome"]["deleted"] == {"count": 2, "avg_days_open": 10.5}
    assert out["by_outcome"]["verified"]["count"] == 1 and out["by_outcome"]["pending"]["count"] == 1
    assert out["by_status"] == {"resolved": 3, "under_review": 1}


_redact = text_redactor(redact)


def test_audit_doc_maps_a_row_and_redacts_the_reason():
    row = {"id": 41, "occurred_at": DAY, "actor_subject": "officer-1", "actor_role": "compliance_officer",
           "actor_user_id": uuid.UUID(A), "action": "search_audit_logs", "resource": "audit_logs",
           "args_digest": "ab" * 32, "decision": "allowed", "reason": "unmask: case 77, caller said 08031234567",
           "rows_returned": 3, "redactions": '{"PHONE": 2, "EMAIL": 1}', "latency_ms": 12, "request_id": "r-1"}
    doc = audit_doc(row, _redact)
    assert doc["audit_id"] == "41" and doc["user_id"] == A and doc["occurred_at"] == DAY.isoformat()
    assert doc["redactions"] == {"PHONE": 2, "EMAIL": 1} and doc["redaction_count"] == 3
    assert "08031234567" not in doc["reason"] and doc["reason"].startswith("unmask: case 77")
    from stores.search.catalog import static_specs

    assert set(doc) <= set(static_specs()["audit-logs"].body["mappings"]["properties"])


def test_credit_report_index_doc_has_facets_and_no_identity():
    from tests.integration.mongo.factories import report

    r = report(A, score=612).model_copy(update={"version": 3})
    doc = credit_report_index_doc(r.to_mongo(), _redact)
    assert (doc["report_id"], doc["user_id"], doc["bureau"], doc["country"], doc["score"], doc["version"]) == (
        r.id, A, "crc_ng", "NG", 612, "3")
    assert doc["account_count"] == 1 and doc["negative_items"] == 1  # one late-payment item
    for pii in ("Chioma Okafor", "22123456789", "08031234567", "0123456789"):
        assert pii not in doc["text"]
    assert "GTBank" in doc["text"] and "utilisation 25%" in doc["text"]
    from stores.search.catalog import static_specs

    assert set(doc) <= set(static_specs()["credit-reports"].body["mappings"]["properties"])


async def test_credit_report_index_is_scoped(own_search):
    from tests.integration.mongo.factories import report

    idx = DocIndexer(own_search, "credit-reports", redact=redact)
    await idx.ensure()
    mine, theirs = report(A, score=600), report(B, score=700)
    n, skipped = await idx.index_rows([mine.to_mongo(), theirs.to_mongo(), {"_id": "bad", "user_id": A}])
    assert n == 2 and len(skipped) == 1
    await own_search.os.indices.refresh(index=idx.alias)
    got = await search_index(own_search, "credit-reports", RowScope.users(A), text="GTBank credit card")
    assert [g["report_id"] for g in got] == [mine.id]
    assert await search_index(own_search, "credit-reports", RowScope.none(), text="GTBank") == []


# --- Postgres feeds (real primary + replica, scratch database) -----------------------------------
async def _replica_has(store, sql: str, *args, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        async with store.connection(replica=True) as conn:
            if await conn.fetchval(sql, *args):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"the replica never showed: {sql}")
        await asyncio.sleep(0.05)


async def _statuses(search, user_ids) -> dict[str, str]:
    alias = search.index_name("users")
    await search.os.indices.refresh(index=alias)
    body = {"size": 100, "query": {"ids": {"values": [str(u) for u in user_ids]}}}
    res = await search.os.search(index=alias, body=body)
    return {h["_id"]: h["_source"]["status"] for h in res["hits"]["hits"]}


async def test_users_feed_picks_up_rows_committed_late_and_reads_no_encrypted_column(
        own_search, search_store, service_store, agent_store, cipher):
    """A long transaction stamps `updated_at` at its start and commits after a sync has passed that time.

    Read as the agent role (which may not read the encrypted columns of `users`), through the replica.
    """
    from tests.integration.postgres.factories import add_user

    users = [await add_user(service_store, cipher) for _ in range(5)]
    await _replica_has(agent_store, "SELECT count(*) = 5 FROM users_public")
    with_lag = DocIndexer(own_search, "users", redact=redact, lag=60)
    without = DocIndexer(search_store, "users", redact=redact, lag=0)  # the old behaviour, for contrast
    for idx in (with_lag, without):
        assert (await idx.sync(postgres=agent_store, batch=2))["indexed"] == 5

    late, early = users[0], users[1]
    async with service_store.connection() as slow, service_store.connection() as fast:
        tx = slow.transaction()
        await tx.start()
        await slow.execute("UPDATE users SET status = 'suspended' WHERE id = $1", late)  # updated_at = T_A
        await asyncio.sleep(0.05)
        await fast.execute("UPDATE users SET status = 'closed' WHERE id = $1", early)  # T_B > T_A, committed
        await _replica_has(agent_store, "SELECT status = 'closed' FROM users_public WHERE id = $1", early)
        for idx in (with_lag, without):
            await idx.sync(postgres=agent_store)  # the high-water mark passes T_B
        await tx.commit()  # the row stamped T_A becomes visible only now
    await _replica_has(agent_store, "SELECT status = 'suspended' FROM users_public WHERE id = $1", late)
    for idx in (with_lag, without):
        await idx.sync(postgres=agent_store)

    assert (await _statuses(own_search, [late, early])) == {str(late): "suspended", str(early): "closed"}
    assert (await _statuses(search_store, [late]))[str(late)] == "active"  # skipped forever without the lag
    again = await with_lag.sync(postgres=agent_store)  # the overlap re-reads the window idempotently
    assert again["indexed"] >= 2 and again["skipped"] == 0
    want = {str(u): "active" for u in users} | {str(late): "suspended", str(early): "closed"}
    assert await _statuses(own_search, users) == want

    report = await with_lag.rebuild(postgres=agent_store)
    assert report.new_count == 5 and report.new_index.endswith("-000002")
    got = await search_index(own_search, "users", RowScope.everyone(), filters={"status": "suspended"})
    assert [g["user_id"] for g in got] == [str(late)]


async def test_transactions_feed_reads_the_mapped_columns(own_search, service_store, agent_store, cipher):
    from tests.integration.postgres.factories import funded_user

    user = await funded_user(service_store, cipher, amount_minor=123_456, currency="USD")
    await _replica_has(agent_store, "SELECT count(*) > 0 FROM transactions WHERE user_id = $1", user)
    out = await DocIndexer(own_search, "transactions", redact=redact).sync(postgres=agent_store)
    assert out["skipped"] == 0 and out["indexed"] >= 1
    await own_search.os.indices.refresh(index=own_search.index_name("transactions"))
    got = await search_index(own_search, "transactions", RowScope.users(user), k=10)
    assert [(g["kind"], g["currency"], g["amount_minor"]) for g in got] == [("deposit", "USD", 123_456)]


async def test_audit_log_index_is_searchable_only_under_a_compliance_scope(own_search, service_store, agent_store):
    from agent_tools.context import ToolContext
    from agent_tools.registry import BY_NAME
    from agent_tools.repositories import Repositories
    from agent_tools.tools.compliance import SearchAuditLogsInput
    from guards.access import AccessSources
    from guards.call import new_call_state
    from guards.principal import Principal, Role
    from stores.postgres.audit import AuditRepository
    from stores.postgres.models import AuditEntry
    from stores.registry import Stores

    audit = AuditRepository(service_store)
    await audit.append(AuditEntry(actor_subject="agent-7", actor_role="support_agent", action="get_dispute",
                                  decision="allowed", reason="customer asked about chargeback timing",
                                  redactions={"PHONE": 1}))
    await audit.append(AuditEntry(actor_subject="cust-1", actor_role="customer", action="search_audit_logs",
                                  decision="denied", reason="role 'customer' may not call 'search_audit_logs'"))
    await _replica_has(agent_store, "SELECT count(*) >= 2 FROM audit_logs")
    with pytest.raises(IndexNotBuilt, match="kredete search sync audit-logs"):
        await search_index(own_search, "audit-logs", AuditScope("compliance_officer", "o-1"), text="chargeback")
    out = await DocIndexer(own_search, "audit-logs", redact=redact).sync(postgres=agent_store)
    assert out["indexed"] >= 2 and out["skipped"] == 0
    await own_search.os.indices.refresh(index=own_search.index_name("audit-logs"))

    def principal(role: Role) -> Principal:
        return Principal(subject=f"{role.value}-1", role=role, token_id="t", expires_at=2**31, issuer="kredete")

    officer = AuditScope.of(principal(Role.COMPLIANCE_OFFICER))
    hits = await search_index(own_search, "audit-logs", officer, text="chargeback timing")
    assert [(h["actor_subject"], h["redactions"]) for h in hits] == [("agent-7", {"PHONE": 1})]
    for role in (Role.CUSTOMER, Role.SUPPORT_AGENT, Role.CREDIT_COACH, Role.RISK_ANALYST):
        with pytest.raises(ScopeRefused):
            AuditScope.of(principal(role))
    for scope in (RowScope.everyone(), RowScope.users(A), RowScope.none()):
        with pytest.raises(ScopeRefused):
            await search_index(own_search, "audit-logs", scope, text="chargeback")
    with pytest.raises(ScopeRefused):  # and an audit scope opens no other index
        await search_index(own_search, "users", officer)

    # the MCP tool: free text goes to the index (with the structured filters), filters alone to Postgres
    repos = Repositories(Stores(postgres=service_store, search=own_search))
    spec = BY_NAME["search_audit_logs"]

    async def search_audit_logs(args: SearchAuditLogsInput, who: Principal):
        """The tool as the guard runs it: its declared scope rule (`audit_trail`), then the handler."""
        scope = await spec.scope.resolve(who, args, AccessSources(assignments=None, min_cell_size=5))
        return await spec.handler(args, ToolContext(principal=who, scope=scope, repos=repos,
                                                    settings=repos.settings, call=new_call_state(spec.name, {})))

    page = await search_audit_logs(SearchAuditLogsInput(query="may not call", decision="denied"),
                                   principal(Role.COMPLIANCE_OFFICER))
    assert page.source == "search_index" and [e.actor_subject for e in page.entries] == ["cust-1"]
    assert page.entries[0].score and page.entries[0].highlights
    none = await search_audit_logs(SearchAuditLogsInput(query="may not call", decision="allowed"),
                                   principal(Role.COMPLIANCE_OFFICER))
    assert none.entries == []
    structured = await search_audit_logs(SearchAuditLogsInput(actor_subject="agent-7"),
                                         principal(Role.COMPLIANCE_OFFICER))
    assert structured.source == "postgres" and [e.action for e in structured.entries] == ["get_dispute"]
    with pytest.raises(ScopeRefused):
        await search_audit_logs(SearchAuditLogsInput(query="chargeback"), principal(Role.SUPPORT_AGENT))
