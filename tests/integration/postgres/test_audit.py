"""Audit log: a single hash chain under concurrency, tampering detected at the right row, compliance search."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from kredete.cli import app
from stores.postgres import AuditEntry, AuditRepository
from stores.scope import RowScope


async def _cli(args: list[str]):
    """The CLI runs its own event loop: call it from a thread."""
    return await asyncio.to_thread(CliRunner().invoke, app, args)


def _entry(i: int, **kw) -> AuditEntry:
    base = {"actor_subject": f"agent-{i % 3}", "actor_role": "support_agent", "action": "search_transactions",
            "decision": "allowed", "rows_returned": i, "redactions": {"PHONE": i % 4, "BVN": 1},
            "args_digest": f"{i:064x}", "latency_ms": 5 + i, "request_id": f"req-{i}", "metadata": {"tool": "x"}}
    return AuditEntry(**{**base, **kw})


@pytest.fixture(scope="module")
async def audit(service_store) -> AuditRepository:
    return AuditRepository(service_store)


async def test_concurrent_appends_form_one_chain(audit, app_store, log_store):
    writers = [AuditRepository(s) for s in (audit.store, app_store, log_store)]
    ids = await asyncio.gather(*(writers[i % 3].append(_entry(i)) for i in range(60)))
    assert len(set(ids)) == 60
    report = await audit.verify_chain()
    assert report.ok, report
    assert report.rows_checked >= 60


async def test_search_for_compliance(audit):
    user = uuid.uuid4()
    await audit.append(_entry(1, decision="denied", reason="outside scope", actor_user_id=user,
                              actor_subject="customer-x", actor_role="customer"))
    found = await audit.search(RowScope.everyone(), actor_subject="customer-x", decision="denied")
    assert [r.reason for r in found] == ["outside scope"] and found[0].redactions == {"PHONE": 1, "BVN": 1}
    assert await audit.search(RowScope.users(user), decision="denied") == found
    assert await audit.search(RowScope.users(uuid.uuid4())) == []
    assert await audit.search(RowScope.everyone(), date_from=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(await audit.search(RowScope.everyone(), limit=1000)) <= 100


async def test_verify_audit_command(pg_db):
    result = await _cli(["db", "verify-audit", "--url", pg_db.service])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output


async def test_tampering_is_detected_at_the_changed_row(audit, pg_db):
    ids = [await audit.append(_entry(100 + i)) for i in range(5)]
    victim = ids[2]
    async with audit.store.connection() as conn:
        # Only a superuser who switches triggers off can even try this.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE audit_logs SET decision = 'denied' WHERE id = $1", victim)
        await conn.execute("RESET session_replication_role")
    report = await audit.verify_chain()
    assert not report.ok and report.first_bad_id == victim and "changed" in report.reason
    result = await _cli(["db", "verify-audit", "--url", pg_db.service])
    assert result.exit_code == 1 and str(victim) in result.output
    async with audit.store.connection() as conn:  # restore for the next test
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE audit_logs SET decision = 'allowed' WHERE id = $1", victim)
        await conn.execute("RESET session_replication_role")
    assert (await audit.verify_chain()).ok


async def test_removed_rows_are_detected(audit):
    ids = [await audit.append(_entry(200 + i)) for i in range(4)]
    async with audit.store.connection() as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM audit_logs WHERE id = $1", ids[1])
        await conn.execute("RESET session_replication_role")
    report = await audit.verify_chain()
    assert not report.ok and report.first_bad_id == ids[2] and "removed" in report.reason
    async with audit.store.connection() as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM audit_logs WHERE id >= $1", ids[1])
        await conn.execute("RESET session_replication_role")
    report = await audit.verify_chain()  # the tail is gone: the chain head still remembers it
    assert not report.ok and "end" in report.reason
