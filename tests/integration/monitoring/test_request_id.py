"""One request id links an MCP call's JSON log line, its audit row and its slow-statement log entries."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from config.paths import REPO_ROOT, local_dir
from evals.harness import Dataset, http_server, http_session, token_for

KREDETE = str(REPO_ROOT / ".venv" / "bin" / "kredete")
pytestmark = pytest.mark.timeout(600)


async def test_a_call_its_audit_row_and_its_statements_share_one_request_id(monitoring):
    import asyncio

    from stores.postgres import PostgresStore

    ds = Dataset("capacity", users=20, seed=5)
    await asyncio.to_thread(ds.prepare)
    settings = ds.settings()
    admin = await PostgresStore(settings.postgres_url.get_secret_value()).connect()
    try:
        async with admin.connection() as conn:
            tx = await conn.fetchval("SELECT id FROM transactions ORDER BY id LIMIT 1")
            # Every statement of the agent role in this database counts as slow, so it reaches the log.
            await conn.execute(f"ALTER ROLE kredete_agent_ro IN DATABASE {ds.db} SET log_min_duration_statement = 0")
        env = {**ds.env, "KREDETE_LOG_LEVEL": "INFO", "KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS": "monitoring-rid"}
        with http_server(env, log_name="monitoring-request-id", timeout_s=180) as url:
            async with http_session(url, token_for(settings, "support_agent", subject="monitoring-rid")) as s:
                result = await s.call_tool("get_transaction", {"transaction_id": str(tx)})
                assert not result.is_error
        async with admin.connection() as conn:
            row = await conn.fetchrow("SELECT request_id, action, decision, metadata::text AS metadata FROM audit_logs "
                                      "WHERE action = 'get_transaction' ORDER BY id DESC LIMIT 1")
    finally:
        async with admin.connection() as conn:
            await conn.execute(f"ALTER ROLE kredete_agent_ro IN DATABASE {ds.db} RESET log_min_duration_statement")
        await admin.close()
    rid = row["request_id"]
    assert rid and row["decision"] == "allowed"
    # The server's log: JSON lines, the call's own line carrying its request id.
    lines = [json.loads(line) for line in (local_dir() / "monitoring-request-id.log").read_text().splitlines()
             if line.startswith("{")]
    calls = [e for e in lines if e.get("request_id") == rid]
    assert any(e["event"] == "tool call" and e["tool"] == "get_transaction" for e in calls), calls
    # PostgreSQL's slow-statement log: the call's statements, named by the same id, without their parameters.
    out = await asyncio.to_thread(
        subprocess.run, [KREDETE, "ops", "slow-queries", "--log", "--request", rid, "--top", "50", "--json"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)
    assert entries and all(e["request_id"] == rid for e in entries)
    assert any("transactions" in e["statement"] and e["who"] == f"kredete_agent_ro@{ds.db}" for e in entries)
    # Attributed by the sessions the audit row records (backend pid and time), not by renaming the session for the
    # call (a round trip per call): the entries' sessions keep the pool's name.
    sessions = json.loads(row["metadata"])["pg_sessions"]
    assert {e["pid"] for e in entries} <= {s["pid"] for s in sessions}
    assert all(e["application"] == "kredete" for e in entries)
    assert str(tx) not in out.stdout  # the statement's parameters are never read back
