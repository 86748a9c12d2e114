"""Audit group commit on the real PostgreSQL: concurrent calls share commits, every caller gets its own row, the
chain verifies, tampering with a batched row is found, and a blocked or absent audit database fails closed
within the bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from config.ports import free_port
from stores.errors import StoreUnavailable
from stores.postgres import AuditEntry, AuditRepository, PostgresStore
from stores.postgres.audit_group_commit import AuditTimeout, GroupCommitAudit

CHAIN_LOCK = "SELECT pg_advisory_lock(hashtext('kredete.audit_logs.chain'))"


def _entry(i: int) -> AuditEntry:
    return AuditEntry(actor_subject=f"agent-{i % 4}", actor_role="support_agent", action="get_transaction",
                      decision="allowed", rows_returned=1, redactions={"PHONE": i % 3}, args_digest=f"{i:064x}",
                      latency_ms=3, request_id=f"gc-{i}", metadata={"transport": "http", "n": i})


@pytest.fixture(scope="module")
def audit(service_store) -> AuditRepository:
    return AuditRepository(service_store)


async def test_concurrent_appends_share_commits_and_each_caller_gets_its_row(audit, log_store):
    group = GroupCommitAudit(AuditRepository(log_store), timeout_s=10)
    ids = await asyncio.gather(*(group.append(_entry(i)) for i in range(80)))
    assert len(set(ids)) == 80
    async with audit.store.connection() as conn:
        rows = await conn.fetch("SELECT id, request_id, xmin::text AS tx FROM audit_logs WHERE id = ANY($1)", ids)
    by_id = {r["id"]: r for r in rows}
    # Each caller got the id of its own row (not another's from the same batch).
    assert [by_id[row_id]["request_id"] for row_id in ids] == [f"gc-{i}" for i in range(80)]
    transactions = {r["tx"] for r in rows}
    assert len(transactions) == group.batches < 80  # batched: fewer commits than calls
    assert (await audit.verify_chain()).ok


async def test_sequential_appends_commit_one_by_one(audit, log_store):
    group = GroupCommitAudit(AuditRepository(log_store), timeout_s=10)
    ids = [await group.append(_entry(100 + i)) for i in range(3)]
    assert ids == sorted(ids) and group.batches == 3
    assert (await audit.verify_chain()).ok


async def test_tampering_with_a_batched_row_is_detected(audit, log_store):
    group = GroupCommitAudit(AuditRepository(log_store), timeout_s=10)
    ids = sorted(await asyncio.gather(*(group.append(_entry(200 + i)) for i in range(10))))
    victim = ids[4]
    async with audit.store.connection() as conn:
        await conn.execute("SET session_replication_role = replica")  # only a superuser can even try
        await conn.execute("UPDATE audit_logs SET rows_returned = 99 WHERE id = $1", victim)
        await conn.execute("RESET session_replication_role")
    report = await audit.verify_chain()
    assert not report.ok and report.first_bad_id == victim and "changed" in report.reason
    async with audit.store.connection() as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE audit_logs SET rows_returned = 1 WHERE id = $1", victim)
        await conn.execute("RESET session_replication_role")
    assert (await audit.verify_chain()).ok


async def test_a_blocked_chain_fails_closed_within_the_bound(audit, log_store):
    group = GroupCommitAudit(AuditRepository(log_store), timeout_s=0.5)
    async with audit.store.connection() as blocker:
        await blocker.execute(CHAIN_LOCK)  # a stuck writer holds the chain
        try:
            t = time.monotonic()
            results = await asyncio.gather(*(group.append(_entry(300 + i)) for i in range(5)),
                                           return_exceptions=True)
            elapsed = time.monotonic() - t
        finally:
            await blocker.execute("SELECT pg_advisory_unlock_all()")
    assert all(isinstance(r, AuditTimeout) for r in results), results  # every caller failed closed
    assert elapsed < 2.0
    # Their batch is cancelled or, if the lock was released first, commits late: rows of refused calls, never
    # data without a row. Either way the chain is free again and intact.
    assert await group.append(_entry(399)) > 0
    assert (await audit.verify_chain()).ok


async def test_an_unreachable_audit_database_fails_closed_within_the_bound():
    store = PostgresStore(f"postgresql://kredete@127.0.0.1:{free_port()}/kredete", timeout=5.0)
    group = GroupCommitAudit(AuditRepository(store), timeout_s=1.0)
    t = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await group.append(_entry(400))
    assert time.monotonic() - t < 3.0
