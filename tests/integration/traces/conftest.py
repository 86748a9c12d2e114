"""AI traces end to end: a small seeded dataset of its own (`kredete_traces`), the MCP server as a real process,
real MCP clients over HTTP, and the records read back from the real credit store and audit trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from evals.harness import Dataset

TRACES_DATASET = Dataset(name="traces", users=12, seed=16, ingest=("kb",))
#: Calls of one subject are not rate limited (a test makes many calls in a row).
EXEMPT = "traces-test-exempt"


@pytest.fixture(scope="session")
def traces_env(stack) -> dict[str, str]:
    TRACES_DATASET.prepare()
    return {**TRACES_DATASET.env, "KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS": EXEMPT}


@pytest.fixture(scope="session")
def traces_server(traces_env):
    """The MCP server over streamable HTTP on the traces dataset (one process for the whole session)."""
    from evals.harness import http_server

    with http_server(traces_env, log_name="traces-http-server", timeout_s=300) as url:  # slow starts under load
        yield url


@pytest.fixture(scope="session")
def traces_settings(traces_env):
    return TRACES_DATASET.settings()


@pytest.fixture(scope="session")
async def customers(traces_settings) -> list[UUID]:
    """Seeded customers with at least one wallet."""
    from stores.registry import connect

    stores = await connect(("postgres",), settings=traces_settings)
    try:
        async with stores.postgres.connection() as conn:
            rows = await conn.fetch("SELECT DISTINCT user_id FROM wallets ORDER BY user_id LIMIT 4")
        return [r["user_id"] for r in rows]
    finally:
        await stores.close()


@pytest.fixture
async def credit_store(traces_settings):
    from stores.mongo.client import MongoStore

    store = await MongoStore(traces_settings.mongo_url.get_secret_value(), traces_settings.mongo_db).connect()
    yield store
    await store.close()


async def eventually(probe: Callable[[], Any], *, timeout: float = 45.0, interval: float = 0.5) -> Any:
    """Poll `probe` (async) until it returns something truthy; the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
