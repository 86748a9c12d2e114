"""Periodic maintenance of the credit store inside a long-running process (the MCP server).

- retention: `purge_expired` (expired logs and write claims, outbox events every consumer has read);
- outbox reconciliation: `Outbox.reconcile` over a look-back window (re-emits events lost between a
  write and its outbox insert; the server has no multi-document transactions).

Each run is bounded by a timeout; a failure is logged and retried at the next tick; `stop()` waits for
the loops to finish their current run briefly, then cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from stores.mongo.documents import now

log = logging.getLogger(__name__)


class Periodic:
    """Run `fn` every `interval` seconds until stopped, each run bounded by `timeout`."""

    def __init__(self, name: str, fn: Callable[[], Awaitable[Any]], *, interval: float,
                 timeout: float = 120.0) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.name = name
        self.fn = fn
        self.interval = interval
        self.timeout = timeout
        self.started = self.finished = self.failures = 0
        self.last_result: Any = None
        self._done = asyncio.Condition()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.started += 1
            try:
                self.last_result = await asyncio.wait_for(self.fn(), self.timeout)
                log.info("mongo job %s: %s", self.name, self.last_result)
            except TimeoutError:
                self.failures += 1
                log.warning("mongo job %s: run exceeded %.0fs; cancelled, retried in %.0fs", self.name,
                            self.timeout, self.interval)
            except Exception as exc:  # the server may be down: try again at the next tick
                self.failures += 1
                log.warning("mongo job %s failed (%s); retried in %.0fs", self.name, type(exc).__name__,
                            self.interval)
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


class MaintenanceJobs:
    """The credit store's background jobs; an interval of 0 disables a job."""

    def __init__(self, db: AsyncIOMotorDatabase, *, retention_interval: float, reconcile_interval: float,
                 reconcile_lookback: float) -> None:
        from stores.mongo.cdc import Outbox
        from stores.mongo.retention import purge_expired

        async def reconcile() -> dict[str, int]:
            window = max(reconcile_lookback, 2 * reconcile_interval)  # consecutive windows overlap
            return {"reemitted": await Outbox(db).reconcile(now() - timedelta(seconds=window))}

        self.jobs: dict[str, Periodic] = {}
        if retention_interval > 0:
            self.jobs["retention"] = Periodic("retention", lambda: purge_expired(db), interval=retention_interval)
        if reconcile_interval > 0:
            self.jobs["reconcile_outbox"] = Periodic("reconcile_outbox", reconcile, interval=reconcile_interval)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> MaintenanceJobs:
        if not self._tasks:
            self._stop.clear()
            self._tasks = [asyncio.create_task(job.run(self._stop), name=f"mongo-job-{name}")
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
