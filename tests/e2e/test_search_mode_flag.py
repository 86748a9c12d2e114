"""The operator's default retrieval mode (flag `search_knowledge.default_mode`) applies to calls that name no
mode, for whom the flag says, on the running server; a mode the caller names is kept."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.conftest import http_session, token_for
from tests.e2e.test_fx_quote import flags
from tests.e2e.test_mcp_server import error_text, payload

FLAG = "search_knowledge.default_mode"


async def test_calls_without_a_mode_run_the_operators_default(http_server, e2e_env, e2e_settings, facts):
    customer = token_for(e2e_settings, "customer", user=facts.alice)
    agent = token_for(e2e_settings, "support_agent")
    query = {"query": "how do I dispute an error on my credit report", "k": 2}

    async def mode(token: str, **extra) -> str:
        async with http_session(http_server, token) as s:
            res = await s.call_tool("search_knowledge", {**query, **extra})
        assert not res.is_error, error_text(res)
        return payload(res)["mode"]

    async def settle(expect: dict[str, str]) -> dict[str, str]:
        seen = {}
        for _ in range(50):
            seen = {"customer": await mode(customer), "agent": await mode(agent)}
            if seen == expect:
                break
            await asyncio.sleep(0.2)
        return seen

    before = json.loads(flags(e2e_env, "list", "--json") or "{}")
    assert await settle({"customer": "hybrid", "agent": "hybrid"}) == {"customer": "hybrid", "agent": "hybrid"}
    try:
        flags(e2e_env, "set", FLAG, "--default", "bm25")
        assert await settle({"customer": "bm25", "agent": "bm25"}) == {"customer": "bm25", "agent": "bm25"}
        assert await mode(agent, mode="knn") == "knn"  # named by the caller: kept
        flags(e2e_env, "set", FLAG, "--rule", "role=customer:knn")
        assert await settle({"customer": "knn", "agent": "bm25"}) == {"customer": "knn", "agent": "bm25"}
    finally:
        if FLAG in before:
            flags(e2e_env, "set", FLAG, "--json", json.dumps(before[FLAG]))
        else:
            flags(e2e_env, "delete", FLAG)
    assert await settle({"customer": "hybrid", "agent": "hybrid"}) == {"customer": "hybrid", "agent": "hybrid"}
