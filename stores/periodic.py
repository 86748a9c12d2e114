"""Periodic jobs inside a long-running process (the MCP server): each run bounded, failures logged.

A job whose run fails or exceeds its timeout is logged and tried again at the next tick; `Jobs.stop()`
lets the loops finish their current run briefly, then cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("kredete.jobs")


class Periodic:
    """Run `fn` every `interval` seconds until stopped, each run bounded by `timeout`; the first run after
    `delay` seconds."""

    def __init__(self, name: str, fn: Callable[[], Awaitable[Any]], *, interval: float,
                 timeout: float = 120.0, delay: float = 0.0) -> None:
        if interval <= 0 or timeout <= 0 or delay < 0:
            raise ValueError("interval and timeout must be positive, delay not negative")
        self.name = name
        self.fn = fn
        self.interval = interval
        self.timeout = timeout
        self.delay = delay
        self.started = self.finished = self.failures = 0
        self.last_result: Any = None
        self._done = asyncio.Condition()

    async def run(self, stop: asyncio.Event) -> None:
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.delay)
        while not stop.is_set():
            self.started += 1
            try:
                self.last_result = await asyncio.wait_for(self.fn(), self.timeout)
                log.info("job %s: %s", self.name, self.last_result)
            except TimeoutError:
                self.failures += 1
                log.warning("job %s: run exceeded %.0fs; cancelled, retried in %.0fs", self.name, self.timeout,
                            self.interval)
            except Exception as exc:  # the server may be down: try again at the next tick
                self.failures += 1
                log.warning("job %s failed (%s); retried in %.0fs", self.name, type(exc).__name__, self.interval)
            async with self._done:
                self.finished += 1
                self._done.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def next_run(self) -> Any:
        """Wait for a run that starts after this call to finish; its result (None when it failed)."""
        target = self.started + 1
        async with self._done:
            await self._done.wait_for(lambda: self.finished >= target)
        return self.last_result


class Jobs:
    """A set of Periodic jobs run as tasks of the running event loop (named `<task_prefix>-<name>`)."""

    def __init__(self, jobs: dict[str, Periodic] | None = None, *, task_prefix: str = "job") -> None:
        self.jobs: dict[str, Periodic] = jobs or {}
        self.task_prefix = task_prefix
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Jobs:
        if not self._tasks:
            self._stop.clear()
            self._tasks = [asyncio.create_task(job.run(self._stop), name=f"{self.task_prefix}-{name}")
                           for name, job in self.jobs.items()]
        return self

    async def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
