"""The audit database killed (kill -9 of a PostgreSQL of our own, migrated): a refusal is still audited, its row
kept in the durable local queue and appended once the database is back; a call that would return data is
refused instead (its refusal row queued the same way); the chain verifies afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import uuid

import pytest

from config.paths import REPO_ROOT
from config.ports import free_port
from guards.audit import NOT_IN_TRAIL, AuditWriter
from guards.call import new_call_state
from stores.postgres import PostgresStore
from stores.postgres.audit import AuditRepository


@pytest.fixture(scope="module")
def audit_pg():
    """A primary of our own (own dir and port), migrated; torn down after."""
    from kredete.stack.postgres import PostgresPrimary
    from stores.postgres import migrate

    # Under the repo, not /tmp: the server's unprivileged user must be able to reach it.
    scratch_dir = REPO_ROOT / ".local" / "scratch" / f"faults-audit-{uuid.uuid4().hex[:8]}"
    scratch_dir.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("KREDETE_LOCAL_DIR", str(scratch_dir))

    class Primary(PostgresPrimary):
        name = "pg-audit-test"
        port = free_port()
        start_timeout = 60.0

    primary = Primary()
    primary.provision()
    try:
        primary.start()
        migrate.upgrade(primary.url())
        yield primary
    finally:
        primary.stop()
        mp.undo()
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _kill9(primary) -> None:
    """kill -9 the server's process group and wait until it is gone (a backend still alive could commit)."""
    import time

    from kredete.stack.base import pid_alive, port_open

    pid = primary.pid()
    assert pid
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (pid_alive(pid) or port_open(primary.port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    primary.pid_file.unlink(missing_ok=True)


async def test_refusals_are_audited_through_an_outage_of_the_audit_database(audit_pg, tmp_path):
    store = await PostgresStore(audit_pg.url(), timeout=1.0).connect()
    repo = AuditRepository(store)
    writer = await AuditWriter(repo, digest_key=b"k" * 32, transport="http", queue=tmp_path / "audit.sqlite",
                               target="audit:test").start()
    subject = f"faults-{uuid.uuid4().hex[:8]}"
    try:
        _kill9(audit_pg)  # the audit database is gone, for real
        refused = new_call_state("get_credit_report", {})
        refused.decision, refused.reason = "denied", "no such record in your scope"
        served = new_call_state("get_wallet_balances", {})
        served.decision = "allowed"
        for state in (refused, served):
            state.extra["subject"] = subject
        assert await writer.write(refused) is True  # a refusal returns nothing: its row may wait on disk
        assert await writer.write(served) is False  # data is never returned on a row not in the trail
        assert await writer.queue.depth("audit:test") == 2

        audit_pg.start()
        assert await writer.flush(60)
        async with store.connection() as conn:
            rows = await conn.fetch("SELECT action, decision, reason, metadata->>'deferred' AS deferred FROM "
                                    "audit_logs WHERE metadata->>'subject' = $1 ORDER BY id", subject)
        assert [(r["action"], r["decision"], r["deferred"]) for r in rows] == [
            ("get_credit_report", "denied", "true"), ("get_wallet_balances", "error", "true")]
        assert rows[1]["reason"] == NOT_IN_TRAIL
        assert (await repo.verify_chain()).ok
    finally:
        await writer.close()
        await store.close()
