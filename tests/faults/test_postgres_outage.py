"""PostgreSQL killed (kill -9) under a small concurrent MCP load, then started again (crash recovery).

The MCP server runs on a private copy of the dataset's PostgreSQL (`kredete.faults.copies.PrivatePostgres`),
which is also the backend of its credit store (a private FerretDB), as in the stack. Every tool needs it: a
call's audit row is in the trail before any data is returned, so no tool answers with data during the outage,
and every refusal's row waits in the durable local queue until the database is back. What the agent sees is
asserted, not timed (bench/faults.py measures at full size).
"""

from __future__ import annotations

from guards.errors import Unavailable
from guards.middleware import NOT_AUDITED, NOT_AUDITED_WRITE
from kredete.faults.copy_outages import postgres_outage
from kredete.faults.load import NEEDS


async def test_postgres_killed_every_refusal_audited_after_recovery(faults_dataset, tmp_path):
    settings, env = faults_dataset
    r = await postgres_outage(settings, env, tmp_path, workers=3, per_tool=3, pause_s=0.2)
    print(r.as_dict())
    # Nothing is served without its audit row: no tool answers with data while the audit database is down ...
    assert set(r.served_during_outage) == set(NEEDS), r
    assert all(share == 0.0 for share in r.served_during_outage.values()), r
    # ... and what the agent gets instead is one of the designed refusals, never a driver's text or an address.
    assert r.refusal_texts and set(r.refusal_texts) <= {Unavailable.public_message, NOT_AUDITED,
                                                        NOT_AUDITED_WRITE}, r
    assert r.leaks == 0, r
    assert r.breaker_during.get("state") in ("open", "half_open"), r
    # Every tool answers again once the database is back (how soon: bench/faults.py), the breakers closed.
    assert r.recovery_s is not None, r
    assert all(state == "closed" for state in r.breaker_after.values()), r
    # Every refusal has its audit row, written from the durable queue after recovery (`deferred`), the queue is
    # empty, the chain verifies (in-process and `kredete db verify-audit`); acknowledged feedback is stored.
    assert r.deferred_rows > 0 and r.breaker_during["queued_audit_rows_left"] == 0, r
    assert r.unaudited == 0 and r.audit_chain_ok, r
    assert "intact" in r.verify_audit, r
    assert r.acknowledged > 0 and r.stored == r.acknowledged, r
