"""`kredete stack up --profile lean` (size runs): a scratch stack of its own runs the primary without replicas or WAL
archiving, and the MCP server answers a customer's tool call on it, reading on the primary.

The scratch stack (tests/drills/conftest.py: own `.local/scratch/<id>`, every port free) runs what the call needs:
the primary, FerretDB and Redis (the rate limiter).
"""

from __future__ import annotations

import asyncio

from evals.harness import http_server, http_session
from kredete.stack.base import port_open
from tests.drills.conftest import scratch_stack

SEED = 42


def test_stack_up_lean_serves_a_tool_call_on_the_primary_alone():
    for s in scratch_stack(("postgres", "redis", "mongo"), KREDETE_STACK_PROFILE="lean"):
        status = s.run("stack", "status", "--only", "postgres", "--profile", "lean", check=False).stdout
        assert "postgres" in status and "replica" not in status
        for port in ("KREDETE_PORT_POSTGRES_REPLICA", "KREDETE_PORT_POSTGRES_REPLICA2"):
            assert not port_open(int(s.env[port]))  # no replica was started
        # the lean primary never archives WAL
        assert s.py("from kredete.stack.postgres import PostgresPrimary\n"
                    "print(PostgresPrimary()._psql('SHOW archive_mode').strip())").strip() == "off"
        user, token = s.py(
            "from config.settings import get_settings\nfrom evals.harness import token_for\n"
            f"from kredete.seed.people import user_id_for\nu = user_id_for({SEED}, 0)\n"
            "print(u, token_for(get_settings(), 'customer', user=u))").split()
        with http_server(s.env, log_name="lean-profile-server", timeout_s=300) as url:
            rows = asyncio.run(_call(url, token))
        # answered from the primary: nothing else holds the rows
        assert rows and {r["user_id"] for r in rows} == {user}


async def _call(url: str, token: str) -> list[dict]:
    async with http_session(url, token) as session:
        result = await session.call_tool("search_transactions", {"limit": 5})
        assert not result.is_error, result.content
        return result.structured_content["transactions"]
