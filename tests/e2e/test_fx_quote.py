"""get_fx_quote on the real stack: priced by the FX service (its rate cached 24 h in Redis), granted to customers
and support agents only, strictly typed, audited, and switched off by the operator's feature flag
(`kredete flags set tools.get_fx_quote.enabled ...`) for whom the flag says, within a moment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from decimal import Decimal

from evals.harness import KREDETE
from tests.e2e.conftest import http_session, token_for
from tests.e2e.test_mcp_server import audit_rows_since, error_text, max_audit_id, payload

FLAG = "tools.get_fx_quote.enabled"
PAIR = ("GBP", "KES")  # a pair no other test quotes (the server keeps a read copy for 30 s)


def flags(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([KREDETE, "flags", *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


async def test_a_quote_is_priced_by_the_fx_service_from_its_cached_rate(http_server, e2e_settings, facts):
    from services.caching import fx_key, read_through
    from services.fx import FXService
    from stores.registry import connect

    stores = await connect(("postgres", "cache"), settings=e2e_settings)
    cache = read_through(stores.cache, e2e_settings)
    try:
        await cache.invalidate(fx_key(*PAIR))
        subject = f"e2e-fx-{uuid.uuid4().hex[:6]}"
        before = await max_audit_id(e2e_settings)
        async with http_session(http_server, token_for(e2e_settings, "customer", user=facts.bob,
                                                       subject=subject)) as s:
            res = await s.call_tool("get_fx_quote", {"sell_currency": PAIR[0], "buy_currency": PAIR[1],
                                                     "sell_amount_minor": 123_456})
            refused = {name: await s.call_tool("get_fx_quote", args) for name, args in {
                "strict": {"sell_currency": "GBP", "buy_currency": "KES", "sell_amount_minor": "100"},
                "same": {"sell_currency": "GBP", "buy_currency": "GBP", "sell_amount_minor": 100},
                "unknown": {"sell_currency": "KES", "buy_currency": "XAU", "sell_amount_minor": 100},
            }.items()}
        assert not res.is_error, error_text(res)
        quote = payload(res)
        expected = await FXService(stores.postgres).quote({"sell_currency": PAIR[0], "buy_currency": PAIR[1],
                                                           "sell_amount_minor": 123_456})
        assert quote["buy_amount_minor"] == expected.buy_amount_minor > 0
        assert Decimal(quote["mid_rate"]) == expected.mid_rate
        assert Decimal(quote["applied_rate"]) == expected.applied_rate
        assert quote["expires_at"] > quote["quoted_at"] and "buys" in error_text(res)
        # The rate went through the service's cache-aside: now in Redis, for about a day (TTL spread ±10 %).
        ttl_ms = await stores.cache.client.pttl(fx_key(*PAIR))
        assert 0.85 * 86_400_000 < ttl_ms <= 1.1 * 86_400_000
        assert refused["strict"].is_error and "sell_amount_minor" in error_text(refused["strict"])
        assert refused["same"].is_error and "must differ" in error_text(refused["same"])
        assert refused["unknown"].is_error and error_text(refused["unknown"]).endswith("no FX rate for KES/XAU")
        rows = [r for r in await audit_rows_since(e2e_settings, before) if r["actor_subject"] == subject]
        assert [(r["action"], r["decision"]) for r in rows] == [("get_fx_quote", "allowed")] + [
            ("get_fx_quote", "denied")] * 3
    finally:
        await cache.close()
        await stores.close()


async def test_only_customers_and_support_agents_may_ask(http_server, e2e_settings):
    args = {"sell_currency": "USD", "buy_currency": "NGN", "sell_amount_minor": 10_000}
    for role in ("credit_coach", "risk_analyst", "compliance_officer"):
        async with http_session(http_server, token_for(e2e_settings, role)) as s:
            res = await s.call_tool("get_fx_quote", args)
        assert res.is_error and "may not call 'get_fx_quote'" in error_text(res), role
    async with http_session(http_server, token_for(e2e_settings, "support_agent")) as s:
        assert "get_fx_quote" in {t.name for t in (await s.list_tools()).tools}
        assert not (await s.call_tool("get_fx_quote", args)).is_error


async def test_the_operator_switches_the_tool_off_by_its_flag(http_server, e2e_env, e2e_settings, facts):
    """The kill switch refuses everyone, a rule on the role only customers; both take effect on the running
    server within moments (the provider follows `kredete flags set`) and are audited as denied."""
    args = {"sell_currency": "USD", "buy_currency": "NGN", "sell_amount_minor": 10_000}
    customer = token_for(e2e_settings, "customer", user=facts.alice)
    agent = token_for(e2e_settings, "support_agent", subject=f"e2e-fx-agent-{uuid.uuid4().hex[:6]}")
    before_flags = json.loads(flags(e2e_env, "list", "--json") or "{}")

    async def outcome(token: str) -> str:
        async with http_session(http_server, token) as s:
            res = await s.call_tool("get_fx_quote", args)
        return error_text(res) if res.is_error else "ok"

    async def settle(expect: dict[str, str]) -> dict[str, str]:
        seen = {}
        for _ in range(50):
            seen = {"customer": await outcome(customer), "agent": await outcome(agent)}
            if all(expect[k] in seen[k] for k in expect):
                break
            await asyncio.sleep(0.2)
        return seen

    switched_off = f"get_fx_quote is switched off by the operator (feature flag {FLAG})"
    before = await max_audit_id(e2e_settings)
    try:
        flags(e2e_env, "set", FLAG, "--kill")
        off = await settle({"customer": switched_off, "agent": switched_off})
        assert all(switched_off in v for v in off.values()), off
        flags(e2e_env, "set", FLAG, "--revive", "--rule", "role=customer:off")
        partial = await settle({"customer": switched_off, "agent": "ok"})
        assert switched_off in partial["customer"] and partial["agent"] == "ok", partial
    finally:
        if FLAG in before_flags:
            flags(e2e_env, "set", FLAG, "--json", json.dumps(before_flags[FLAG]))
        else:
            flags(e2e_env, "delete", FLAG)
    back = await settle({"customer": "ok", "agent": "ok"})
    assert back == {"customer": "ok", "agent": "ok"}
    rows = [r for r in await audit_rows_since(e2e_settings, before) if r["action"] == "get_fx_quote"]
    denied = [r for r in rows if r["decision"] == "denied"]
    assert denied and all(r["reason"].startswith("get_fx_quote is switched off") for r in denied)
