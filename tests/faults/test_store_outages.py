"""Each store killed (kill -9) under a small concurrent MCP load, then started again; the MCP server itself is
killed and restarted during the credit store's outage. What the agent sees is asserted, not timed: refusal
and recovery times, at full size, are measured by bench/faults.py."""

from __future__ import annotations

from config.settings import get_settings
from guards.errors import Unavailable
from kredete.faults.outage import credit_store_outage, redis_outage


async def test_credit_store_killed_then_the_server_killed_and_restarted(faults_dataset, tmp_path):
    settings, env = faults_dataset
    r = await credit_store_outage(settings, env, tmp_path, workers=3, per_tool=3)
    print(r.as_dict())
    # The tool that needs only PostgreSQL keeps answering; the credit-store tools are refused cleanly.
    assert r.served_during_outage["get_wallet_balances"] >= 0.99, r
    assert r.refusal_texts == [Unavailable.public_message], r
    assert r.leaks == 0, r
    # The breaker opened (seen in /healthz); from then on it refuses at once (the audit row's reason says so)
    # rather than every call waiting out the store's timeout. (Times are measured in bench/faults.py.)
    assert r.breaker_during.get("state") in ("open", "half_open"), r
    # Only the calls that opened it and those in flight then waited for the store's timeout.
    assert r.refused_by_breaker > 0, r
    assert r.refused_by_timeout <= get_settings().breaker_failures + 3, r
    # The restarted server (started while the store was down) serves the store again once it is back.
    assert r.recovery_s is not None, r
    assert r.breaker_after["state"] == "closed", r
    # Nothing acknowledged is lost; every answer has its audit row; the chain verifies.
    assert r.acknowledged > 0 and r.stored == r.acknowledged, r  # feedback acknowledged before and after
    assert r.unaudited == 0 and r.audit_chain_ok, r


async def test_redis_killed_tools_keep_answering_rate_limited_in_process(faults_dataset, tmp_path):
    settings, env = faults_dataset
    r = await redis_outage(settings, env, tmp_path, workers=3, per_tool=3)
    print(r.as_dict())
    assert all(share >= 0.99 for share in r.served_during_outage.values()), r
    assert r.leaks == 0, r
    assert r.breaker_during["degraded_rows"] > 0, r  # audited as rate limited in the process
    assert r.recovery_s is not None, r  # counted in Redis again (how soon: bench/faults.py)
    assert r.stored == r.acknowledged and r.unaudited == 0 and r.audit_chain_ok, r
