"""Naming a call's PostgreSQL session ahead of its first statement (`calls`, `PostgresStore.warm`), on the real
servers: the session a call's statements run in carries the call's request id either way, a warmed session is
named before the call asks for it, and a warmed session the call never uses goes back to the pool."""

from __future__ import annotations

import asyncio

from config.logs import request_context
from stores.postgres.pool import calls

APP = "SELECT current_setting('application_name')"


async def _in_use(store) -> int:
    """Connections checked out of the store's pools, the least of 20 looks over 0.2 s (the store's own lag checks
    hold one now and then)."""
    pools = [store.primary, *(r.pool for r in store.replicas)]
    seen = []
    for _ in range(20):
        seen.append(sum(p.get_size() - p.get_idle_size() for p in pools if p is not None))
        await asyncio.sleep(0.01)
    return min(seen)


async def test_the_second_call_of_a_label_gets_its_session_named_ahead(agent_store):
    with request_context("rid-first"):
        async with calls("get_transaction"):
            assert agent_store.warm() is None  # nothing learnt yet for this label
            async with agent_store.connection(replica=True) as conn:
                assert await conn.fetchval(APP) == "kredete:rid-first"
    with request_context("rid-second"):
        async with calls("get_transaction"):
            warming = agent_store.warm()
            assert warming is not None
            await warming  # what the middleware does while the rate limit runs
            async with agent_store.connection(replica=True) as conn:
                # Named before this checkout ran anything: the warmed session, for this call.
                assert conn.get_settings().application_name == "kredete:rid-second"
                assert await conn.fetchval(APP) == "kredete:rid-second"
            async with agent_store.connection(replica=True) as again:  # a second checkout is named as before
                assert await again.fetchval(APP) == "kredete:rid-second"


async def test_a_warmed_session_the_call_does_not_use_is_given_back(agent_store):
    with request_context("rid-a"):
        async with calls("list_things"), agent_store.connection(replica=True) as conn:
            await conn.fetchval("SELECT 1")
    base = await _in_use(agent_store)
    with request_context("rid-b"):
        async with calls("list_things"):
            await agent_store.warm()
            assert await _in_use(agent_store) == base + 1  # held for the call
            # The call ends without a statement (refused by a guard, say).
    assert await _in_use(agent_store) == base
    with request_context("rid-c"):
        async with calls("list_things"):
            assert agent_store.warm() is None  # not prepared again until a call of it checks one out
            async with agent_store.connection(replica=False) as conn:  # on the primary this time
                assert await conn.fetchval(APP) == "kredete:rid-c"
    with request_context("rid-d"):
        async with calls("list_things"):
            await agent_store.warm()
            async with agent_store.connection(replica=False) as conn:
                assert conn.get_settings().application_name == "kredete:rid-d"


async def test_outside_a_call_nothing_is_warmed(agent_store):
    assert agent_store.warm() is None
    with request_context("rid-x"):
        async with agent_store.connection(replica=True) as conn:
            assert await conn.fetchval(APP) == "kredete:rid-x"
