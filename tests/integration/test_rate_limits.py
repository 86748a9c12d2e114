"""The sliding-window limiter against the real Redis (the stack's cluster by default), as the restricted agent user
the MCP server uses; and its degraded mode when Redis cannot answer."""

from __future__ import annotations

import uuid

import pytest

from config.settings import resolve
from guards.errors import RateLimited
from guards.principal import Principal, Role
from guards.ratelimit import RATE_LIMIT_DEGRADED, RateLimiter, RateLimits, identity_key
from stores.cache import CacheStore, hash_tag

LIMITS = RateLimits(per_tool=3, per_principal=5, window_ms=60_000, degraded_per_tool=2, degraded_per_principal=3)


@pytest.fixture(scope="module")
def redis_stack(session_stack):
    session_stack.need(["redis"])
    return resolve()


@pytest.fixture
async def limiter(redis_stack):
    store = await CacheStore(redis_stack.redis_agent_url.get_secret_value()).connect()
    yield RateLimiter(store, LIMITS, own_issuer="kredete")
    await store.close()


def _principal(role: Role, subject: str, user: uuid.UUID | None = None) -> Principal:
    return Principal(subject=subject, role=role, user_id=user, token_id=uuid.uuid4().hex, expires_at=2**31,
                     issuer="kredete")


async def test_per_tool_then_per_principal_windows(limiter):
    agent = _principal(Role.SUPPORT_AGENT, f"agent-{uuid.uuid4().hex}")
    for _ in range(3):
        assert await limiter.check(agent, "get_transaction") == "counted"
    with pytest.raises(RateLimited) as refused:
        await limiter.check(agent, "get_transaction")
    assert 0 < refused.value.retry_after_s <= 60
    # The principal window holds 5 calls across tools: 3 spent, so 2 more of another tool, then refused.
    for _ in range(2):
        assert await limiter.check(agent, "list_disputes") == "counted"
    with pytest.raises(RateLimited):
        await limiter.check(agent, "search_transactions")


async def test_one_customer_shares_one_quota_whatever_the_token_subject(limiter):
    user = uuid.uuid4()
    for i in range(3):
        await limiter.check(_principal(Role.CUSTOMER, f"user:{user}:{i}", user), "get_wallet_balances")
    with pytest.raises(RateLimited):
        await limiter.check(_principal(Role.CUSTOMER, "another-subject", user), "get_wallet_balances")
    # another user is untouched
    other = uuid.uuid4()
    assert await limiter.check(_principal(Role.CUSTOMER, f"user:{other}", other), "get_wallet_balances") == "counted"


async def test_redis_down_degrades_to_the_in_process_limiter():
    dead = CacheStore("redis://agent:x@127.0.0.1:1/0?cluster=true", timeout=0.3)
    with pytest.raises(Exception):  # noqa: B017 - the outage
        await dead.connect()
    limiter = RateLimiter(dead, LIMITS, own_issuer="kredete")
    before = RATE_LIMIT_DEGRADED.labels(outcome="counted")._value.get()
    agent = _principal(Role.SUPPORT_AGENT, f"agent-{uuid.uuid4().hex}")
    # Tools keep answering, at the lower degraded quotas (2 per tool, 3 per principal), never an error.
    assert [await limiter.check(agent, "get_transaction") for _ in range(2)] == ["degraded", "degraded"]
    with pytest.raises(RateLimited):
        await limiter.check(agent, "get_transaction")
    assert await limiter.check(agent, "list_disputes") == "degraded"
    with pytest.raises(RateLimited):
        await limiter.check(agent, "search_transactions")
    assert RATE_LIMIT_DEGRADED.labels(outcome="counted")._value.get() == before + 3
    # Failed logins are still limited per IP while Redis is down, and their aggregation counted in-process.
    seen = [await limiter.auth_failure("10.0.0.9", "invalid_token") for _ in range(3)]
    assert [s.count_in_window for s in seen] == [1, 2, 3]
    assert await limiter.claim_aggregate(seen[-1].aggregate_key) == 3
    await dead.close()


async def test_a_limiter_with_no_redis_at_all_is_degraded_not_refusing():
    limiter = RateLimiter(None, LIMITS)
    assert await limiter.check(_principal(Role.CUSTOMER, "c", uuid.uuid4()), "get_wallet_balances") == "degraded"


# Commands that touch the limiter's keys, or could carry a second round trip of it (a bare read or write, an
# EVAL that ships the script's source, a transaction); the monitoring's INFO/PING/SLOWLOG traffic is left out.
_LIMITER_COMMANDS = ("evalsha", "eval", "script|load", "zadd", "zcard", "zremrangebyscore", "zrange", "pexpire",
                     "get", "set", "multi", "exec")


async def _commandstats(store: CacheStore, key: str) -> dict[str, int]:
    """Calls per command on the master serving `key` (a replica's copy of a script's effects is no round trip)."""
    client = store.redis
    if store.cluster:
        info = await client.info("commandstats", target_nodes=client.get_node_from_key(key, replica=False))
    else:
        info = await client.info("commandstats")
    return {k[8:]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}


async def test_a_check_is_one_round_trip_observed_on_the_redis_servers(redis_stack):
    """Both windows of a call cost one EVALSHA (the script is loaded once, never shipped per call): the servers'
    own command counters see N EVALSHAs for N checks, and every key command ran inside them (two windows:
    trim, count, take, expire each)."""
    admin = await CacheStore(redis_stack.redis_url.get_secret_value()).connect()
    store = await CacheStore(redis_stack.redis_agent_url.get_secret_value()).connect()
    try:
        limiter = RateLimiter(store, RateLimits(per_tool=1000, per_principal=1000), own_issuer="kredete")
        agent = _principal(Role.SUPPORT_AGENT, f"agent-{uuid.uuid4().hex}")
        await limiter.check(agent, "get_transaction")  # loads the script if this server never saw it
        n = 40
        key = f"rl:{hash_tag(identity_key(agent))}:*"
        before = await _commandstats(admin, key)
        for _ in range(n):
            assert await limiter.check(agent, "get_transaction") == "counted"
        after = await _commandstats(admin, key)
    finally:
        await store.close()
        await admin.close()
    delta = {c: after.get(c, 0) - before.get(c, 0) for c in _LIMITER_COMMANDS}
    assert delta == {"evalsha": n, "eval": 0, "script|load": 0, "zadd": 2 * n, "zcard": 2 * n,
                     "zremrangebyscore": 2 * n, "zrange": 0, "pexpire": 2 * n, "get": 0, "set": 0, "multi": 0,
                     "exec": 0}
