"""Test session: start the local stack of real servers once, stop what this session started."""

from __future__ import annotations

import os

import pytest

from kredete.settings import resolve


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath) or "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack():
    """Every local server up and healthy; the ones this session started are stopped at the end.

    Set KREDETE_KEEP_STACK=1 to leave them running (faster re-runs while developing).
    """
    from kredete import stack as local_stack

    before = {s.name for s in local_stack.status() if s.healthy}
    local_stack.up()
    yield local_stack.status()
    if os.environ.get("KREDETE_KEEP_STACK") != "1":
        started = [s.name for s in local_stack.local_servers() if s.name not in before]
        if started:
            local_stack.down(started)


@pytest.fixture(scope="session")
def settings(stack):
    return resolve()


@pytest.fixture(scope="session")
async def stores(settings):
    """Every adapter connected as the service role."""
    from stores.registry import connect

    s = await connect(settings=settings)
    yield s
    await s.close()
