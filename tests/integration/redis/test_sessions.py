"""Write-through sessions: both stores written, reads from Redis, revocation effective at once, fail closed."""

from __future__ import annotations

import pytest

from services.sessions import SessionService, SessionUnavailable, token_hash
from stores.cache import CacheStore
from stores.cache.sessions import SessionCache, session_key
from tests.integration.postgres.factories import add_user


@pytest.fixture
async def sessions(service_store, cache):
    return SessionService(service_store, SessionCache(cache))


async def test_create_writes_both_stores_and_validate_reads_redis(sessions, service_store, cipher, cache):
    uid = await add_user(service_store, cipher)
    new = await sessions.create(uid, ip="10.1.2.3", user_agent="pytest")
    async with service_store.connection() as conn:
        row = await conn.fetchrow("SELECT user_id, revoked_at, host(ip) AS ip FROM sessions WHERE token_hash = $1",
                                  token_hash(new.token))
    assert row["user_id"] == uid and row["revoked_at"] is None and row["ip"] == "10.1.2.3"
    assert await cache.get(session_key(token_hash(new.token))) is not None
    assert (await sessions.validate(new.token)).user_id == uid
    assert await sessions.validate("not-a-token") is None
    # Reads come from Redis only: a row deleted from PostgreSQL does not end a live session...
    async with service_store.connection() as conn:
        await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash(new.token))
    assert (await sessions.validate(new.token)).user_id == uid


async def test_revocation_is_effective_on_the_next_request(sessions, service_store, cipher):
    uid = await add_user(service_store, cipher)
    a, b = await sessions.create(uid), await sessions.create(uid)
    assert await sessions.touch(a.token) is not None
    assert await sessions.revoke(a.token) is True
    assert await sessions.validate(a.token) is None
    assert await sessions.touch(a.token) is None
    async with service_store.connection() as conn:
        revoked = await conn.fetchval("SELECT revoked_at FROM sessions WHERE token_hash = $1", token_hash(a.token))
    assert revoked is not None
    assert await sessions.validate(b.token) is not None
    assert await sessions.revoke_all(uid) == 1
    assert await sessions.validate(b.token) is None


async def test_sessions_fail_closed_when_redis_is_down(service_store, cipher, sessions):
    uid = await add_user(service_store, cipher)
    live = await sessions.create(uid)
    dead = CacheStore("redis://kredete:x@127.0.0.1:1/0", timeout=0.3)
    with pytest.raises(Exception):  # noqa: B017 - the outage
        await dead.connect()
    down = SessionService(service_store, SessionCache(dead))
    with pytest.raises(SessionUnavailable):
        await down.validate(live.token)  # refused, never admitted
    with pytest.raises(SessionUnavailable):
        await down.create(uid)
    async with service_store.connection() as conn:  # no usable durable session was left behind
        n = await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", uid)
    assert n == 1
    # A revocation during the outage is recorded, raised, and applied to Redis when it is back.
    with pytest.raises(SessionUnavailable):
        await down.revoke(live.token)
    assert await sessions.validate(live.token) is not None  # Redis never heard of it yet
    assert await sessions.reconcile_revoked() >= 1
    assert await sessions.validate(live.token) is None
    await dead.close()
