"""The PostgreSQL sessions a call used (`calls`, `call_sessions`), on the real servers: each checkout is recorded
with the server, the backend pid and a window that holds the server's own time of the statements run in it, and
no session is renamed for it (no round trip: the session keeps the pool's application_name)."""

from __future__ import annotations

import asyncio

from config.logs import request_context
from stores.postgres.pool import call_sessions, calls

#: What the session ran as, where and when (the server's clock, epoch milliseconds, as its log prints it).
WHO = "SELECT pg_backend_pid(), current_setting('application_name'), current_setting('port')::int, " \
      "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"


async def test_each_session_of_a_call_is_recorded_with_its_pid_and_window(agent_store):
    with request_context("rid-sessions"):
        async with calls("get_transaction"):
            async with agent_store.connection(replica=True) as conn:
                first = await conn.fetchrow(WHO)
            await asyncio.sleep(0.01)
            async with agent_store.connection(replica=False) as conn:
                second = await conn.fetchrow(WHO)
            used = call_sessions()
    assert len(used) == 2
    for row, rec in zip((first, second), used, strict=True):
        pid, app, port, at_ms = row
        assert rec["pid"] == pid
        assert rec["server"].endswith(f":{port}")
        assert rec["from"] <= at_ms <= rec["to"]  # the window holds the statement, by the server's clock
        assert app == "kredete"  # not renamed for the call
    assert used[0]["to"] <= used[1]["from"] + 1  # in order of use


async def test_outside_a_call_nothing_is_recorded(agent_store):
    async with agent_store.connection(replica=True) as conn:
        await conn.fetchval("SELECT 1")
    assert call_sessions() == []
    async with calls("list_things"):
        pass
    assert call_sessions() == []


async def test_calls_running_concurrently_record_their_own_sessions(agent_store):
    async def one(label: str) -> list[int]:
        async with calls(label):
            async with agent_store.connection(replica=False) as conn:
                await conn.fetchval("SELECT pg_sleep(0.05)")
                pid = conn.get_server_pid()
            return [pid, *(s["pid"] for s in call_sessions())]

    a, b = await asyncio.gather(one("a"), one("b"))
    assert a[0] == a[1] and b[0] == b[1] and len(a) == len(b) == 2
    assert a[0] != b[0]  # two connections at once: each call saw only its own
