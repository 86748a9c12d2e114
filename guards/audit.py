"""Writing the audit trail: one append-only, hash-chained row per guarded call (denials and refusals too).

Rows go through the append-only log role (`AuditRepository.append`, which may only EXECUTE audit_append).
A row records who, a keyed digest of the arguments, the decision and reason, what was returned and
redacted, and fixed metadata; never the arguments themselves or an unknown name the caller sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import Counter
from pydantic import ValidationError

from guards.call import CallState, args_digest
from stores.errors import InvalidData, StoreUnavailable
from stores.local_queue import DurableQueue
from stores.postgres.audit import AuditRepository
from stores.postgres.audit_group_commit import GroupCommitAudit
from stores.postgres.models import AuditEntry

log = logging.getLogger("kredete.guards.audit")

AUDIT_DEFERRED = Counter("kredete_audit_rows_deferred", "Audit rows kept in the durable local queue because the "
                         "audit database could not take them")
AUDIT_DEFERRED_DROPPED = Counter("kredete_audit_rows_deferred_dropped", "Deferred audit rows the database refused "
                                 "for good when they were appended")
#: The reason of the row queued for an allowed call the trail could not take (the caller then fails closed).
NOT_IN_TRAIL = "the audit database was unavailable: nothing was returned or written"
#: A deferred row failing with an error that is neither an outage nor a refusal of the row is retried this many
#: times before it is dropped (counted), so one bad row cannot hold the queue forever.
MAX_DEFERRED_ATTEMPTS = 50


class AuditWriter:
    def __init__(self, repository: GroupCommitAudit | AuditRepository | None, *, digest_key: bytes,
                 transport: str, queue: DurableQueue | str | Path | None = None, target: str = "audit") -> None:
        """`queue`: the durable local queue (or its file) of rows the audit database could not take; None:
        such a call fails closed, unaudited. `target` names the audit database in it."""
        self.repository = repository
        self.digest_key = digest_key
        self.transport = transport
        self._own_queue = queue is not None and not isinstance(queue, DurableQueue)
        self.queue = DurableQueue(queue, name="audit") if self._own_queue else queue
        self.target = target
        self._drainer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def entry(self, state: CallState) -> AuditEntry:
        p = state.principal
        key = self.digest_key
        return AuditEntry(
            actor_subject=p.subject if p else "anonymous", actor_role=p.role.value if p else "none",
            actor_user_id=p.user_id if p else None, action=state.tool or "unknown", resource=state.resource,
            args_digest=args_digest(state.arguments, key), decision=state.decision,
            reason=(state.reason or None) and state.reason[:500], rows_returned=state.rows_returned,
            redactions=state.redactions, latency_ms=int((time.perf_counter() - state.started) * 1000),
            request_id=state.request_id,
            metadata={"transport": self.transport, "truncated": state.truncated,
                      "injection_flags": state.injection_flags, "unmasked": state.unmasked,
                      "token_id": p.token_id if p else None, **state.extra,
                      # An unknown tool/resource/prompt name is caller text: only its keyed digest is kept.
                      **({"requested_name_digest": args_digest({"name": state.requested_name}, key)}
                         if state.requested_name is not None else {})},
        )

    async def write(self, state: CallState) -> bool:
        """Append the call's row (awaiting its commit); False when it could not be written in time (the caller
        then fails closed).

        While the audit database cannot take it, the row is kept in the durable local queue instead (`defer`).
        """
        entry = self.entry(state)
        if self.repository is not None:
            try:
                await self.repository.append(entry)
                return True
            except Exception as exc:
                log.error("audit write failed for request %s: %s", state.request_id, type(exc).__name__)
        return await self.defer(entry)

    # --- the audit database is down: rows wait in a durable local queue ------------------------------------
    async def defer(self, entry: AuditEntry) -> bool:
        """Keep a row the audit database could not take in the durable local queue (SQLite, fsynced), to be
        appended, with its own time and `deferred: true`, once the database is back.

        What may be deferred is what returns no data: a refusal, or the outcome of a write whose intent row is
        already in the trail. A row of an allowed read (or a write's intent) is not: data is never served, nor
        a write made, on a row not yet in the trail. Its refusal row (`error`, nothing returned) is queued
        instead and False returned, so the caller fails closed as before, audited.
        """
        if self.queue is None:
            return False
        served = entry.decision == "allowed" and entry.metadata.get("phase") != "outcome"
        if served:
            entry = entry.model_copy(update={"decision": "error", "reason": NOT_IN_TRAIL})
        entry = entry.model_copy(update={"occurred_at": entry.occurred_at or datetime.now(UTC),
                                         "metadata": {**entry.metadata, "deferred": True}})
        try:
            await self.queue.put(self.target, "audit", entry.model_dump_json().encode())
        except Exception as exc:
            log.error("audit row could not be queued either (%s): the call fails closed", type(exc).__name__)
            return False
        AUDIT_DEFERRED.inc()
        self._wake.set()
        self._ensure_drainer()
        return not served

    async def start(self) -> AuditWriter:
        """Drain rows an earlier process left in the queue (killed, or stopped while the database was down)."""
        if self.queue is not None and await self.queue.depth(self.target):
            self._ensure_drainer()
        return self

    def _ensure_drainer(self) -> None:
        if self.repository is not None and (self._drainer is None or self._drainer.done()):
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="audit-deferred-drainer")

    async def _drain(self) -> None:
        """Append queued rows in order; an outage (or an unexpected error, up to `MAX_DEFERRED_ATTEMPTS`) keeps
        them, retried with backoff; only a row refused for good is dropped, counted and logged."""
        delay = 0.1
        while True:
            if not self.queue.try_lock_drain(self.target):  # another process of this host drains them
                return
            batch = await self.queue.peek(self.target, 100)
            if not batch:
                self.queue.unlock_drain(self.target)
                return
            for rec in batch:
                try:
                    entry = AuditEntry.model_validate_json(rec.payload)
                    await self.repository.append(entry)
                except (ValidationError, InvalidData) as exc:  # refused for good: never blocks the queue
                    self._drop(exc)
                except Exception as exc:  # the database cannot take it now (any other error: retried)
                    if not isinstance(exc, StoreUnavailable):
                        if rec.attempts + 1 >= MAX_DEFERRED_ATTEMPTS:
                            self._drop(exc)
                            await self.queue.ack([rec.id])
                            continue
                        await self.queue.bump([rec.id])
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    delay = min(delay * 2, 2.0)
                    break
                await self.queue.ack([rec.id])
                delay = 0.1

    @staticmethod
    def _drop(exc: BaseException) -> None:
        AUDIT_DEFERRED_DROPPED.inc()
        log.error("a deferred audit row was refused for good and dropped: %s", type(exc).__name__)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until no deferred row waits; False when `timeout` passed first."""
        if self.queue is None:
            return True
        deadline = time.monotonic() + timeout
        while await self.queue.depth(self.target):
            if time.monotonic() > deadline:
                return False
            self._ensure_drainer()
            await asyncio.sleep(0.1)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Append what the database takes within `timeout`; the rest stays queued for the next process."""
        if self.queue is None:
            return
        with contextlib.suppress(Exception):
            await self.flush(timeout)
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._drainer
        self.queue.unlock_drain(self.target)
        if self._own_queue:
            await self.queue.close()
