"""The MCP server's per-process copy of known PII (names the output redactor masks), on the real servers: a name
changed with its `users` change event reaches the next answer through the publisher and Redis pub/sub, an erasure
announced by the DSR step leaves no stale name in use, and without the invalidation channel nothing is kept."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_tools.runtime import AgentRuntime
from config.settings import resolve
from guards.call import new_call_state
from guards.principal import Principal, Role
from services.caching import USERS_TOPIC, read_through
from services.invalidation import InvalidationPublisher, announce_erased
from stores.postgres.outbox import ChangeEventRepository
from stores.postgres.privacy import PrivacyRepository
from stores.postgres.users import pii_context
from stores.registry import Stores
from tests.integration.postgres.conftest import agent_store  # noqa: F401 (fixture)
from tests.integration.postgres.factories import add_user


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def runtime(agent_store, agent_cache, cipher):  # noqa: F811 (the imported fixture)
    """The real runtime wired to the agent's PostgreSQL role and Redis user, following invalidations."""
    s = resolve()
    rt = AgentRuntime(s).wire(Stores(postgres=agent_store, cache=agent_cache, settings=s), cipher=cipher)
    await rt.follow_pii_invalidations()
    await _until(rt._pii_followed)
    yield rt
    await rt._pii_follower.stop()


async def _answer(rt: AgentRuntime, uid, reference: str) -> dict:
    """The redacted output of a support agent's call whose output names the user and holds `reference` bare."""
    state = new_call_state("get_transaction", {})
    state.principal = Principal(subject="agent-pii", role=Role.SUPPORT_AGENT, user_id=None, token_id="t",
                                expires_at=2**31, issuer="test")
    return await rt.gate.redact({"user_id": str(uid), "reference": reference, "status": "completed"}, state)


async def test_a_renamed_user_is_redacted_by_the_new_name_in_the_next_answer(runtime, service_store, cipher, cache):
    uid = await add_user(service_store, cipher, name="Chinedu Okafor")
    front = read_through(cache, resolve())
    publisher = await InvalidationPublisher(front, postgres=service_store, poll_s=0.5,
                                            name=f"test-{time.time_ns()}").start()
    try:
        await asyncio.sleep(0.3)  # the first drain registers the consumer at the end of the outbox
        assert (await _answer(runtime, uid, "Okafor"))["reference"] == "[PERSON]"
        assert (await _answer(runtime, uid, "Zainab"))["reference"] == "Zainab"
        hits = runtime.known_pii.hits
        assert (await _answer(runtime, uid, "Okafor"))["reference"] == "[PERSON]"
        assert runtime.known_pii.hits == hits + 1  # served from the process's copy: no lookup
        # The name changes, with its change event in the same transaction (what a writer of users does).
        received = runtime._pii_follower.received
        async with service_store.transaction() as conn:
            await conn.execute("UPDATE users SET full_name_enc = $2 WHERE id = $1", uid,
                               cipher.encrypt("Zainab Bello", pii_context("full_name", uid)))
            seq = await ChangeEventRepository.emit_in(conn, USERS_TOPIC, str(uid), uid, {"fields": ["full_name"]})
        await publisher.wait_pg(seq)
        await _until(lambda: runtime._pii_follower.received > received)
        assert (await _answer(runtime, uid, "Zainab"))["reference"] == "[PERSON]"
        assert (await _answer(runtime, uid, "Okafor"))["reference"] == "Okafor"
    finally:
        await publisher.stop()
        await front.close()


async def test_an_erased_users_name_is_not_used_once_the_erasure_is_announced(runtime, service_store, cipher, cache):
    uid = await add_user(service_store, cipher, name="Ngozi Adeyemi")
    assert (await _answer(runtime, uid, "Adeyemi"))["reference"] == "[PERSON]"
    assert runtime.known_pii.hits == 0 and len(runtime.known_pii) == 1
    await PrivacyRepository(service_store).erase([uid])
    received = runtime._pii_follower.received
    await announce_erased(cache, [str(uid)])  # what `kredete dsr erase`'s redis step sends after the commit
    await _until(lambda: runtime._pii_follower.received > received)
    assert len(runtime.known_pii) == 0
    misses = runtime.known_pii.misses
    assert (await _answer(runtime, uid, "Adeyemi"))["reference"] == "Adeyemi"  # the erased name is nowhere now
    assert runtime.known_pii.misses == misses + 1


async def test_without_the_invalidation_channel_every_answer_looks_up(runtime, service_store, cipher):
    uid = await add_user(service_store, cipher, name="Tunde Bakare")
    await runtime._pii_follower.stop()  # as when Redis is down: not subscribed, so nothing may be kept
    assert not runtime._pii_followed() and len(runtime.known_pii) == 0
    assert (await _answer(runtime, uid, "Bakare"))["reference"] == "[PERSON]"
    async with service_store.connection() as conn:
        await conn.execute("UPDATE users SET full_name_enc = $2 WHERE id = $1", uid,
                           cipher.encrypt("Tunde Afolabi", pii_context("full_name", uid)))
    # Read on the agent's replica when nothing is kept: wait until it has the new name.
    async def renamed() -> bool:
        return (await _answer(runtime, uid, "Afolabi"))["reference"] == "[PERSON]"

    deadline = time.monotonic() + 10
    while not await renamed():
        assert time.monotonic() < deadline, "the replica never showed the new name"
        await asyncio.sleep(0.05)
    assert len(runtime.known_pii) == 0 and runtime.known_pii.hits == 0
