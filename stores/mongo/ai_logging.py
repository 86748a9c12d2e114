"""Logging API for the MCP server and RAG: conversations, prompts, feedback, predictions.

Model (as in LLM-observability tools): a trace is a conversation (`conversation_id`); its observations
are turns, tool calls and retrievals (`llm_conversations`); scores are feedback (`feedback_signals`);
prompts are versioned templates whose uses go to `prompt_history`; model outputs go to
`model_predictions`. Conversations and prompt history expire after `retention` (`expires_at`);
feedback and predictions do not.

**Public write API** (stable; a trace model may build on `record`):

* `log_conversation_turn`, `log_prompt`, `log_feedback`, `log_prediction`: redact, validate, then `record`;
* `record(collection, model, fields)`: validate `fields` with the pydantic `model` (a `stores.mongo.documents`
  document), check it is safe and small enough, and commit it to the durable local queue.

Each returns the record's `_id` once it is **committed to the local queue** (`stores.local_queue`: SQLite,
fsynced), so a record the caller was given an id for survives a kill -9 of the process and an outage of the
credit store; None when the queue is full (nothing was stored: do not acknowledge it; counted as dropped).
They raise InvalidData for a record that can never be stored and StoreUnavailable when the local queue
cannot be written. Lifecycle: `start()` (background drainer), `flush(timeout)`, `stop(timeout)`, `stats`.

**Draining.** One process per host drains a queue target (the credit store's database name) at a time (the
queue's drain lock); it inserts batches with acknowledged writes (w=1) and deletes them from the queue only
once the server has them. Every record carries a client-generated `_id`, so a retry after an unknown outcome
(server or process killed mid-write) cannot duplicate: duplicate-key answers count as written. After a batch
smaller than `batch_size` it lets records gather for `linger_s` (0.25 s; `flush` and `stop` cut it short), so a
steady trickle of records (one per MCP call) shares one insert instead of paying one each.

**Transient vs permanent** (`stores.mongo.errors`). An outage (no answer, timeouts, the drivers' retryable
codes, and FerretDB's code 1 while its PostgreSQL backend is down) keeps the batch and retries it with
backoff (0.05 s doubling to `max_retry_delay`) for as long as it lasts, never dropping anything. Only a
refusal of the data itself is permanent (validation, too large, invalid document or namespace): that record
is dropped, counted by reason (`stats.rejected`, `kredete_ai_log_records_dropped_total{reason}`) and logged.
A record answered with an unknown error code is retried up to `max_attempts` times, then dropped as
`code_<n>` the same way, so one bad record cannot block the queue forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.errors import InvalidDocument
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from pymongo import WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from stores.breaker import Breaker, CircuitOpen
from stores.errors import InvalidData
from stores.local_queue import DurableQueue, QueueFull, Record, default_queue_dir
from stores.mongo import collections as names
from stores.mongo.client import MongoStore, breaker_of
from stores.mongo.documents import (
    ConversationTurn,
    FeedbackSignal,
    ModelPrediction,
    PromptRecord,
    ToolCall,
    new_id,
    now,
)
from stores.mongo.errors import DUPLICATE_KEY, PERMANENT_REASONS, TRANSIENT_CODES, code_reason, is_outage
from stores.mongo.errors import refusal_reason as classify
from stores.mongo.safety import DEFAULT_MAX_INPUT_BYTES, check_size, ensure_safe

log = logging.getLogger(__name__)
Redactor = Callable[[str], str]
#: user ids -> those of them that were erased (blocking: it runs on a worker thread)
ErasedLookup = Callable[[list[str]], Iterable[str]]
_CODEC = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)

RECORDS_DROPPED = Counter("kredete_ai_log_records_dropped", "AI-log records not stored, by reason: refused by the "
                          "server for good (validation, too_large, invalid_document, invalid_namespace, code_<n>) "
                          "or not accepted because the local queue was full (queue_full)", ["reason"])
RECORDS_WRITTEN = Counter("kredete_ai_log_records_written", "AI-log records stored in the credit store")

__all__ = ["DUPLICATE_KEY", "PERMANENT_REASONS", "TRANSIENT_CODES", "AILogger", "LoggerStats", "classify",
           "default_retention"]


def default_retention() -> timedelta:
    """Settings `log_retention_days` (`KREDETE_LOG_RETENTION_DAYS`, default 90) for conversations and prompts."""
    from config.settings import get_settings

    return timedelta(days=get_settings().log_retention_days)


def default_queue_path() -> Path:
    return default_queue_dir() / "ai-log.sqlite"


@dataclass(frozen=True)
class LoggerStats:
    #: records of this logger's target waiting in the local queue (last known)
    buffered: int
    written: int
    #: records not accepted (queue full): their callers got None
    dropped: int
    #: failed write attempts of a batch (outages), each followed by a backoff
    retries: int
    failed: int
    #: records refused for good, by reason (`failed` is their sum)
    rejected: dict[str, int] = field(default_factory=dict)


def _redact_leaves(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, Mapping):
        return {k: _redact_leaves(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_leaves(v, redactor) for v in value]
    return value


def _bson(collection: str, doc: Mapping[str, Any]) -> bytes:
    try:
        return bson.encode(doc, codec_options=_CODEC)
    except (InvalidDocument, OverflowError, TypeError) as exc:
        raise InvalidData(f"{collection} record cannot be encoded ({type(exc).__name__})", store="mongo") from exc


class AILogger:
    """Durable, retrying, idempotent writer of AI/ML logs (see the module doc).

    `mongo_store`: the credit store (a MongoStore, or its database). `queue`: the durable local queue
    (a DurableQueue, or a path; default `KREDETE_QUEUE_DIR/ai-log.sqlite`, `.local/queues/`); records are
    queued under the database's name. `buffer_size`: the most records the queue may hold (default
    `KREDETE_QUEUE_MAX_RECORDS`). `erased`: which of some user ids were erased (their data keys destroyed);
    a queued record of such a user is dropped when it drains instead of written (counted as `user_erased`), so
    a record queued before an erasure, on any host, cannot bring the user's data back after it.
    """

    def __init__(self, mongo_store: MongoStore | AsyncDatabase, *, buffer_size: int | None = None,
                 redactor: Redactor | None = None, retention: timedelta | None = None, batch_size: int = 500,
                 max_record_bytes: int = DEFAULT_MAX_INPUT_BYTES, max_retry_delay: float = 2.0,
                 queue: DurableQueue | str | Path | None = None, max_attempts: int = 20,
                 poll_interval: float = 0.5, erased: ErasedLookup | None = None, linger_s: float = 0.25) -> None:
        self._source = mongo_store
        self.erased = erased
        self.redactor = redactor
        self.retention = retention or default_retention()
        self.batch_size = batch_size
        self.max_record_bytes = max_record_bytes
        self.max_retry_delay = max_retry_delay
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        #: After a batch smaller than `batch_size`, how long the drainer lets records gather before the next one
        #: (`flush` and `stop` cut it short): a steady trickle of calls then costs one insert, one peek and one
        #: ack per `linger_s`, not per call, on the event loop and the credit store the calls share.
        self.linger_s = linger_s
        self._own_queue = not isinstance(queue, DurableQueue)
        if isinstance(queue, DurableQueue):
            self.queue = queue
        else:
            self.queue = DurableQueue(queue or default_queue_path(), name="ai_log", max_records=buffer_size)
        self.target = mongo_store.db_name if isinstance(mongo_store, MongoStore) else mongo_store.name
        self._buffered = 0
        self._written = self._dropped = self._retries = self._failed = 0
        self._rejected: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def db(self) -> AsyncDatabase:
        return self._source.db if isinstance(self._source, MongoStore) else self._source

    @property
    def breaker(self) -> Breaker | None:
        if isinstance(self._source, MongoStore):
            return self._source.breaker
        return breaker_of(self._source)

    @property
    def stats(self) -> LoggerStats:
        return LoggerStats(buffered=self._buffered, written=self._written, dropped=self._dropped,
                           retries=self._retries, failed=self._failed, rejected=dict(self._rejected))

    # --- public API ----------------------------------------------------------------------------
    async def log_conversation_turn(self, conversation_id: str, user_id: Any, role: str, content: str, *,
                                    principal_subject: str, tool_calls: list[Mapping[str, Any]] | None = None,
                                    retrieved_ids: list[str] | None = None,
                                    metadata: Mapping[str, Any] | None = None) -> str | None:
        """An observation of the trace `conversation_id`: a turn, a tool call (role `tool`) or a retrieval."""
        calls = [dict(c) for c in tool_calls or []]
        if self.redactor:
            content = self.redactor(content)
            for c in calls:
                c["arguments"] = _redact_leaves(c.get("arguments") or {}, self.redactor)
        kind = "tool_call" if role == "tool" else ("retrieval" if retrieved_ids and role == "system" else "turn")
        ts = now()
        return await self.record(names.LLM_CONVERSATIONS, ConversationTurn, dict(
            conversation_id=conversation_id, user_id=user_id, principal_subject=principal_subject,
            observation=kind, role=role, content=content, tool_calls=[ToolCall.model_validate(c) for c in calls],
            retrieved_ids=list(retrieved_ids or []), metadata=dict(metadata or {}), created_at=ts,
            expires_at=ts + self.retention))

    async def log_prompt(self, name: str, version: str, template: str, variables: Mapping[str, Any], *,
                         user_id: Any, principal_subject: str) -> str | None:
        """A use of prompt `name`@`version`; variables (user content) are redacted."""
        vars_ = _redact_leaves(dict(variables), self.redactor) if self.redactor else dict(variables)
        ts = now()
        return await self.record(names.PROMPT_HISTORY, PromptRecord, dict(
            name=name, version=str(version), template=template,
            template_sha256=hashlib.sha256(template.encode()).hexdigest(), variables=vars_, user_id=user_id,
            principal_subject=principal_subject, created_at=ts, expires_at=ts + self.retention))

    async def log_feedback(self, conversation_id: str, user_id: Any, *, score: float, label: str | None,
                           comment: str | None, principal_subject: str,
                           observation_id: str | None = None) -> str | None:
        """A score on a trace, or on one observation of it (kept without expiry)."""
        if comment and self.redactor:
            comment = self.redactor(comment)
        return await self.record(names.FEEDBACK_SIGNALS, FeedbackSignal, dict(
            conversation_id=conversation_id, user_id=user_id, principal_subject=principal_subject, score=score,
            label=label, comment=comment, observation_id=observation_id))

    async def log_prediction(self, model: str, version: str, user_id: Any, inputs: Mapping[str, Any],
                             outputs: Mapping[str, Any], latency_ms: float) -> str | None:
        """A model output with its inputs (string leaves redacted)."""
        ins, outs = dict(inputs), dict(outputs)
        if self.redactor:
            ins, outs = _redact_leaves(ins, self.redactor), _redact_leaves(outs, self.redactor)
        return await self.record(names.MODEL_PREDICTIONS, ModelPrediction, dict(
            model=model, version=str(version), user_id=user_id, inputs=ins, outputs=outs, latency_ms=latency_ms))

    async def record(self, collection: str, model: type[BaseModel], fields: dict[str, Any]) -> str | None:
        """Validate `fields` as a `model` document (a fresh `_id` is added unless `fields` carries one, as the
        trace model's documents do) and commit it to the local queue.

        The record's `_id` once durable; None when the queue is full (counted as dropped); InvalidData for a
        record that can never be stored (nothing is queued); StoreUnavailable when the queue cannot be written.
        Callers redact before calling: the queue and the store only ever hold what is given here.
        """
        (record_id,) = await self.record_many([(collection, model, fields)])
        return record_id

    async def record_many(self, items: Sequence[tuple[str, type[BaseModel], dict[str, Any]]]) -> list[str | None]:
        """`record` for several documents (a trace and its observation): every one is validated, checked and
        encoded before any is queued (InvalidData: none is), then they are committed together, one local-queue
        transaction and one fsync. Their ids (None for one the full queue did not accept), in order."""
        built = [(collection, self._encoded(collection, model, fields)) for collection, model, fields in items]
        return list(await asyncio.gather(*(self._accept(collection, doc_id, payload)
                                           for collection, (doc_id, payload) in built)))

    def _encoded(self, collection: str, model: type[BaseModel], fields: dict[str, Any]) -> tuple[str, bytes]:
        try:
            doc = model.model_validate({"_id": new_id(), **fields}).to_mongo()  # type: ignore[attr-defined]
        except ValidationError as exc:
            bad = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
            raise InvalidData(f"{collection} record failed validation: {', '.join(bad)}", store="mongo") from exc
        ensure_safe(doc)
        check_size(doc, self.max_record_bytes, what=f"{collection} record")
        return doc["_id"], _bson(collection, doc)

    async def _accept(self, collection: str, doc_id: str, payload: bytes) -> str | None:
        try:
            await self._commit(collection, payload)
        except QueueFull:
            self._dropped += 1
            RECORDS_DROPPED.labels(reason="queue_full").inc()
            log.warning("ai log queue full (%d records); a %s record was not accepted", self.queue.max_records,
                        collection)
            return None
        return doc_id

    async def _put(self, collection: str, doc: Mapping[str, Any]) -> None:
        """Commit a built document to the queue as it is (no checks: `record` does them)."""
        await self._commit(collection, _bson(collection, doc))

    async def _commit(self, collection: str, payload: bytes) -> None:
        await self.queue.put(self.target, collection, payload)
        self._buffered += 1
        self._wake.set()

    # --- draining ------------------------------------------------------------------------------
    async def _write_batch(self, batch: list[Record]) -> bool:
        """Write one batch; True when every record of it was settled (written or refused for good).

        Raises on an outage with the queue untouched: the whole batch is retried (records already written
        come back as duplicate keys, which count as written).
        """
        groups: dict[str, list[tuple[Record, dict[str, Any]]]] = {}
        done: list[int] = []
        again: list[int] = []
        refused: list[tuple[str, str]] = []
        for rec in batch:
            try:
                groups.setdefault(rec.kind, []).append((rec, bson.decode(rec.payload, codec_options=_CODEC)))
            except Exception:  # a damaged queue record can never be written: drop it, counted
                done.append(rec.id)
                refused.append((rec.kind, "corrupt_queue_record"))
        erased = await self._erased_among(groups)
        for coll, items in groups.items():
            if erased:
                gone = [rec for rec, doc in items if str(doc.get("user_id")) in erased]
                done += [rec.id for rec in gone]
                refused += [(coll, "user_erased")] * len(gone)
                items = [(rec, doc) for rec, doc in items if str(doc.get("user_id")) not in erased]
                if not items:
                    continue
            outcome = await self._insert(coll, items)
            for rec, reason in outcome:
                if reason is None:
                    done.append(rec.id)
                elif reason.startswith("retry:"):
                    code = reason.split(":", 1)[1]
                    if rec.attempts + 1 >= self.max_attempts:
                        done.append(rec.id)
                        refused.append((coll, f"code_{code}"))
                    else:
                        again.append(rec.id)
                else:
                    done.append(rec.id)
                    refused.append((coll, reason))
        await self.queue.ack(done)
        await self.queue.bump(again)
        for coll, reason in refused:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1
            RECORDS_DROPPED.labels(reason=reason).inc()
            if reason == "user_erased":
                log.info("ai log: a %s record of an erased user was dropped", coll)
            else:
                log.error("ai log: a %s record was refused by the server (%s) and dropped", coll, reason)
        n_written = len(done) - len(refused)
        self._failed += len(refused)
        self._written += n_written
        RECORDS_WRITTEN.inc(n_written)
        self._buffered = max(0, self._buffered - len(done))
        return not again

    async def _erased_among(self, groups: dict[str, list[tuple[Record, dict[str, Any]]]]) -> set[str]:
        """The erased users among a batch's records (an outage of the key store is one of the batch's outages:
        raised, and the batch retried, never written unchecked)."""
        if self.erased is None:
            return set()
        ids = sorted({str(doc["user_id"]) for items in groups.values() for _, doc in items if doc.get("user_id")})
        if not ids:
            return set()
        lookup = self.erased
        return set(await asyncio.to_thread(lambda: list(lookup(ids))))

    async def _insert(self, coll: str, items: list[tuple[Record, dict[str, Any]]]
                      ) -> list[tuple[Record, str | None]]:
        """Insert the documents; per record None (stored), a permanent reason, or `retry:<code>` (answered with
        an unknown code). Raises on an outage."""
        target = self.db.get_collection(coll, write_concern=WriteConcern(w=1))
        breaker = self.breaker
        if breaker is not None:
            breaker.check()  # CircuitOpen: an outage, retried after the backoff
        try:
            await target.insert_many([doc for _, doc in items], ordered=False)
        except BulkWriteError as exc:
            if breaker is not None:
                breaker.success()
            details = exc.details
            if details.get("writeConcernErrors"):
                raise
            by_index = {err.get("index"): err for err in details.get("writeErrors", [])}
            out: list[tuple[Record, str | None]] = []
            for i, (rec, _) in enumerate(items):
                err = by_index.get(i)
                if err is None or err.get("code") == DUPLICATE_KEY:  # stored, or stored before an ack was lost
                    out.append((rec, None))
                    continue
                code = err.get("code")
                reason = code_reason(code, tuple(err.get("errorLabels", ())))
                if reason is not None:
                    out.append((rec, reason))
                elif code in TRANSIENT_CODES or "RetryableWriteError" in err.get("errorLabels", ()):
                    raise  # some records may succeed on a retry: the whole batch again, after the backoff
                else:
                    out.append((rec, f"retry:{code}"))
            return out
        except (PyMongoError, InvalidDocument) as exc:
            if is_outage(exc):
                if breaker is not None:
                    breaker.failure(exc)
                raise
            if breaker is not None:
                breaker.success()
            reason = classify(exc)
            if len(items) == 1:
                rec = items[0][0]
                if reason is not None:
                    return [(rec, reason)]
                code = exc.code if isinstance(exc, OperationFailure) else type(exc).__name__
                return [(rec, f"retry:{code}")]
            # The server (or the driver) refused the command as a whole: find the refused records one by one.
            out = []
            for item in items:
                out += await self._insert(coll, [item])
            return out
        if breaker is not None:
            breaker.success()
        return [(rec, None) for rec, _ in items]

    async def _drain(self, stop_when_empty: bool, *, give_up_on_outage: bool = False) -> None:
        """Write queued records until stopped (or, `stop_when_empty`, until none is left); with
        `give_up_on_outage`, return at the first outage (what is left stays queued)."""
        delay = 0.05
        while True:
            if not self.queue.try_lock_drain(self.target):
                # Another process of this host drains this target; ours are drained by it.
                if stop_when_empty or self._stopping:
                    return
                await self._nap(1.0)
                continue
            batch = await self.queue.peek(self.target, self.batch_size)
            if not batch:
                self._buffered = 0
                if stop_when_empty or self._stopping:
                    return
                await self._nap(self.poll_interval)  # records other processes queued are seen by polling
                continue
            try:
                settled = await self._write_batch(batch)
            except Exception as exc:  # an outage (or the queue failing): keep the batch, back off
                self._retries += 1
                if give_up_on_outage or self._stopping:
                    return
                if not isinstance(exc, CircuitOpen):
                    log.warning("ai log write failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            if settled:
                delay = 0.05
                if len(batch) < self.batch_size and not (stop_when_empty or self._stopping):
                    await self._linger()
            else:  # records answered with an unknown code: retried after the backoff
                self._retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    async def _linger(self) -> None:
        if self.linger_s > 0 and not self._urgent.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), self.linger_s)
        self._urgent.clear()

    async def _nap(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def start(self) -> AILogger:
        """Start the background drainer (idempotent). Records queued by an earlier process (killed, or stopped
        while the store was down) are drained too."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._buffered = await self.queue.depth(self.target)
            self._task = asyncio.create_task(self._drain(stop_when_empty=False), name="ai-logger-drainer")
        return self

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until no record of this target waits in the queue; False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            if self._task is None or self._task.done():
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._drain(stop_when_empty=True), remaining)
            else:
                self._urgent.set()
                self._wake.set()
            depth = await self.queue.depth(self.target)
            if depth == 0:
                self._buffered = 0
                return True
            if time.monotonic() >= deadline:
                self._buffered = depth
                return False
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 10.0) -> LoggerStats:
        """Drain what the store takes within `timeout` (not waiting out an outage), then stop; what is left
        stays in the queue (durable) for the next process. Returns the final stats."""
        self._stopping = True
        self._urgent.set()
        self._wake.set()
        if self._task is not None:
            # Let the drainer finish the batch in hand: cancelled between the server's answer and the queue's
            # ack, the ack still ran on the queue's thread while the batch's records went uncounted.
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain(stop_when_empty=True, give_up_on_outage=True), timeout)
        with contextlib.suppress(Exception):
            self._buffered = await self.queue.depth(self.target)
        if self._buffered:
            log.warning("ai log stopped with %d records still queued (kept in %s for the next start)",
                        self._buffered, self.queue.path)
        self.queue.unlock_drain(self.target)
        if self._own_queue:
            await self.queue.close()
        return self.stats
