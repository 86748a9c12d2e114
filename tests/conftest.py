"""Test session: start the local stack of real servers once, stop what this session started."""

from __future__ import annotations

import os

import pytest

from config.settings import resolve


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath) or "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


class SessionStack:
    """Starts servers of the local stack on demand and remembers which ones this session started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def need(self, names: list[str] | None = None) -> list:
        """These servers (None: all; their dependencies too) up and healthy; returns their status."""
        from kredete import stack as local_stack

        before = {s.name for s in local_stack.status() if s.healthy}
        rows = local_stack.up(names)
        self.started += [r.name for r in rows if r.name not in before and r.name not in self.started]
        return rows

    def stop_started(self) -> None:
        from kredete import stack as local_stack

        if self.started:
            local_stack.down(self.started)
            self.started = []


@pytest.fixture(scope="session")
def session_stack():
    """What every fixture that needs servers goes through: whatever it started is stopped at the end
    of the session (the servers that were already running stay). KREDETE_KEEP_STACK=1 keeps them all."""
    manager = SessionStack()
    yield manager
    if os.environ.get("KREDETE_KEEP_STACK") != "1":
        manager.stop_started()


@pytest.fixture(scope="session")
def stack(session_stack):
    """Every local server up and healthy; the ones this session started are stopped at the end.

    Set KREDETE_KEEP_STACK=1 to leave them running (faster re-runs while developing).
    """
    return session_stack.need()


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
