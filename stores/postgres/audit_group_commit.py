"""Group commit of audit rows: the rows of concurrent calls share one insert, one chain-lock hold and one commit.

A caller enqueues its row and awaits the commit of the batch that carries it (so no data leaves before its row
is durable). One flush runs at a time per process: the first row starts a flush at once (a lone call waits for
exactly one round trip, as before); rows that arrive while a flush is in flight form the next batch. So under
load a batch holds the rows of every call that waited for the previous commit, and throughput is bounded by
commits per second times the batch size rather than by one commit per call.

Fail closed within a bounded time: a caller waits at most `timeout_s` for its batch (`AuditTimeout` after),
the batch statement itself is cancelled after `timeout_s`. A row whose caller gave up before its batch was
sent is dropped (that call already failed closed); a row in a batch that commits after its caller gave up
stays (an audit row of a refused call, never data without a row).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging

from stores.errors import StoreUnavailable
from stores.postgres.audit import AuditRepository
from stores.postgres.models import AuditEntry

log = logging.getLogger("kredete.stores.audit")


class AuditTimeout(StoreUnavailable):
    """The audit row was not committed within the bound: the call fails closed."""


class GroupCommitAudit:
    def __init__(self, repository: AuditRepository, *, timeout_s: float = 2.0, max_batch: int = 500) -> None:
        self.repository = repository
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._queue: list[tuple[AuditEntry, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Batches committed and rows in them (for tests and metrics).
        self.batches = 0
        self.rows = 0

    async def append(self, entry: AuditEntry) -> int:
        """The row's id once its batch has committed; `AuditTimeout` after `timeout_s`, the store's error if
        the batch failed (the row is then not written)."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, fut))
        if self._flusher is None or self._flusher.done():
            # Not in the caller's context: a batch carries the rows of many calls, so its session is not named
            # after the first one's request id (each row records its own), and the audit pool's session keeps
            # its plain name, which spares the renaming round trip on the path every call waits for.
            self._flusher = asyncio.create_task(self._flush_loop(), context=contextvars.Context())
        try:
            return await asyncio.wait_for(fut, self.timeout_s)  # cancels `fut` on timeout: its row is dropped
        except TimeoutError:
            raise AuditTimeout(f"audit row not committed within {self.timeout_s}s") from None

    async def _flush_loop(self) -> None:
        while self._queue:
            batch = [(e, f) for e, f in self._queue[:self.max_batch] if not f.done()]
            del self._queue[:self.max_batch]
            if not batch:
                continue
            try:
                ids = await self.repository.append_many([e for e, _ in batch], timeout=self.timeout_s)
            except Exception as exc:  # every caller of the batch fails closed with this error
                log.error("audit batch of %d rows failed: %s", len(batch), type(exc).__name__)
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc if isinstance(exc, StoreUnavailable | TimeoutError)
                                        else StoreUnavailable(type(exc).__name__))
                continue
            self.batches += 1
            self.rows += len(ids)
            for (_, f), row_id in zip(batch, ids, strict=True):
                if not f.done():
                    f.set_result(row_id)

    async def close(self) -> None:
        """Let the rows already queued commit (bounded by `timeout_s`)."""
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), self.timeout_s)
