"""The agent's Redis user can touch only its own key spaces; the service user cannot administer the server."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import NoPermissionError, ResponseError

from stores.cache import CacheStore


async def test_agent_user_is_confined_to_its_key_spaces(settings, stores):
    agent = await CacheStore(settings.redis_agent_url.get_secret_value()).connect()
    try:
        secret_key = f"session:{uuid.uuid4().hex}"
        await stores.cache.redis.set(secret_key, "service-only", ex=60)
        with pytest.raises(NoPermissionError):
            await agent.redis.get(secret_key)  # sessions are not the agent's
        with pytest.raises(NoPermissionError):
            await agent.redis.set("anything:else", "x")
        with pytest.raises((NoPermissionError, ResponseError)):
            await agent.redis.flushdb()
        with pytest.raises((NoPermissionError, ResponseError)):
            await agent.redis.config_set("appendonly", "no")
        key = f"rl:test:{uuid.uuid4().hex}"
        await agent.redis.zadd(key, {"a": 1})  # rate-limit windows are its own
        assert await agent.redis.zcard(key) == 1
        await stores.cache.redis.delete(key, secret_key)
    finally:
        await agent.close()


async def test_service_user_cannot_reconfigure_the_server(stores):
    with pytest.raises((NoPermissionError, ResponseError)):
        await stores.cache.redis.config_set("appendonly", "no")
    assert (await stores.cache.health())["aof_enabled"] is True
