"""Fixtures of the Redis layer: the stack's Redis (a cluster by default), a fresh migrated PostgreSQL database
and a fresh credit-store database per module, the services on them, and a running invalidation publisher."""

from __future__ import annotations

import pytest

from config.settings import resolve
from services.caching import read_through
from stores.cache import CacheStore
from tests.integration.mongo.conftest import mongo, mongo_url  # noqa: F401 (fixtures)
from tests.integration.postgres.conftest import (  # noqa: F401 (fixtures)
    cipher,
    pg_db,
    pg_stack,
    pg_template,
    service_store,
)


@pytest.fixture(scope="session")
def redis_urls(session_stack) -> tuple[str, str]:
    session_stack.need(["redis"])
    s = resolve()
    return s.redis_url.get_secret_value(), s.redis_agent_url.get_secret_value()


@pytest.fixture(scope="module")
async def cache(redis_urls):
    store = await CacheStore(redis_urls[0]).connect()
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def agent_cache(redis_urls):
    store = await CacheStore(redis_urls[1]).connect()
    yield store
    await store.close()


@pytest.fixture
async def reader(cache):
    """A process's cache-aside front (local tier on, following invalidations)."""
    rtc = read_through(cache, resolve())
    await rtc.follow_invalidations()
    yield rtc
    await rtc.close()
