"""The sliding-window limiter against the real Redis, as the restricted agent user the MCP server uses."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from guards.errors import RateLimited
from guards.principal import Principal, Role
from guards.ratelimit import RateLimiter, RateLimits


@pytest.fixture
async def limiter(settings):
    client = aioredis.from_url(settings.redis_agent_url.get_secret_value())
    yield RateLimiter(client, RateLimits(per_tool=3, per_principal=5, window_ms=60_000), own_issuer="kredete")
    await client.aclose()


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
