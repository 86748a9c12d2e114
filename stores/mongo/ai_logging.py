"""Logging API for the MCP server and RAG: conversations, prompts, feedback, predictions.

Model (as in LLM-observability tools): a trace is a conversation (`conversation_id`); its observations
are turns, tool calls and retrievals (`llm_conversations`); scores are feedback (`feedback_signals`);
prompts are versioned templates whose uses go to `prompt_history`; model outputs go to
`model_predictions`. Conversations and prompt history expire after `retention` (`expires_at`);
feedback and predictions do not.

Writes never block a tool response: `log_*` validates, redacts and enqueues into a bounded in-memory
buffer, and a background flusher inserts batches with acknowledged writes (w=1). Every record carries a
client-generated `_id`, so a retry after an unknown outcome (server killed mid-write) cannot duplicate:
duplicate-key answers count as written. Transient errors (network, not primary, timeouts) are retried
with backoff; a record the server refuses for good (validation, too large, invalid document or
namespace) is dropped and counted by reason (`LoggerStats.rejected`), so it never blocks the buffer.
When the buffer is full the new record is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bson.errors import InvalidDocument
from motor.motor_asyncio import AsyncIOMotorDatabase
from pydantic import BaseModel, ValidationError
from pymongo import WriteConcern
from pymongo.errors import BulkWriteError, ConnectionFailure, DocumentTooLarge, OperationFailure, PyMongoError

from stores.errors import InvalidData
from stores.mongo import collections as names
from stores.mongo.client import MongoStore
from stores.mongo.documents import (
    ConversationTurn,
    FeedbackSignal,
    ModelPrediction,
    PromptRecord,
    ToolCall,
    new_id,
    now,
)
from stores.mongo.safety import DEFAULT_MAX_INPUT_BYTES, check_size, ensure_safe

log = logging.getLogger(__name__)
Redactor = Callable[[str], str]
DUPLICATE_KEY = 11000
#: Server answers that mean "try again later" (the drivers' retryable set: network, shutdown, not primary,
#: timeouts, write conflicts).
TRANSIENT_CODES = frozenset({6, 7, 46, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64})
#: Why a record was refused for good, by server code; other codes are reported as `code_<n>`.
PERMANENT_REASONS = {121: "validation", 10334: "too_large", 17419: "too_large", 2: "invalid_document",
                     14: "invalid_document", 22: "invalid_document", 52: "invalid_document",
                     53: "invalid_document", 55: "invalid_document", 56: "invalid_document", 73: "invalid_namespace"}


def _code_reason(code: int | None, labels: tuple[str, ...] = ()) -> str | None:
    if code in TRANSIENT_CODES or "RetryableWriteError" in labels or code is None:
        return None
    return PERMANENT_REASONS.get(code, f"code_{code}")


def classify(exc: BaseException) -> str | None:
    """None when retrying may succeed (transient), else the reason the record is refused for good.

    A definite answer of the server about the write is permanent unless its code is a transient one;
    any failure to get an answer (connection, server selection) is transient.
    """
    if isinstance(exc, DocumentTooLarge):
        return "too_large"
    if isinstance(exc, InvalidDocument):
        return "invalid_document"
    if isinstance(exc, ConnectionFailure):  # includes AutoReconnect, NotPrimaryError, NetworkTimeout
        return None
    if isinstance(exc, OperationFailure):
        labels = tuple(label for label in ("RetryableWriteError",) if exc.has_error_label(label))
        return _code_reason(exc.code, labels)
    return None


def default_retention() -> timedelta:
    """Settings `log_retention_days` (`KREDETE_LOG_RETENTION_DAYS`, default 90) for conversations and prompts."""
    from config.settings import get_settings

    return timedelta(days=get_settings().log_retention_days)


@dataclass(frozen=True)
class LoggerStats:
    buffered: int
    written: int
    dropped: int
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


class AILogger:
    """Buffered, retrying, idempotent writer of AI/ML logs."""

    def __init__(self, mongo_store: MongoStore | AsyncIOMotorDatabase, *, buffer_size: int = 10_000,
                 redactor: Redactor | None = None, retention: timedelta | None = None, batch_size: int = 500,
                 max_record_bytes: int = DEFAULT_MAX_INPUT_BYTES, max_retry_delay: float = 2.0) -> None:
        self._source = mongo_store
        self._buffer: deque[tuple[str, dict[str, Any]]] = deque()
        self.buffer_size = buffer_size
        self.redactor = redactor
        self.retention = retention or default_retention()
        self.batch_size = batch_size
        self.max_record_bytes = max_record_bytes
        self.max_retry_delay = max_retry_delay
        self._written = self._dropped = self._retries = self._failed = 0
        self._rejected: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def db(self) -> AsyncIOMotorDatabase:
        return self._source.db if isinstance(self._source, MongoStore) else self._source

    @property
    def stats(self) -> LoggerStats:
        return LoggerStats(buffered=len(self._buffer), written=self._written, dropped=self._dropped,
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
        return self._enqueue(names.LLM_CONVERSATIONS, ConversationTurn, dict(
            conversation_id=conversation_id, user_id=user_id, principal_subject=principal_subject,
            observation=kind, role=role, content=content, tool_calls=[ToolCall.model_validate(c) for c in calls],
            retrieved_ids=list(retrieved_ids or []), metadata=dict(metadata or {}), created_at=ts,
            expires_at=ts + self.retention))

    async def log_prompt(self, name: str, version: str, template: str, variables: Mapping[str, Any], *,
                         user_id: Any, principal_subject: str) -> str | None:
        """A use of prompt `name`@`version`; variables (user content) are redacted."""
        vars_ = _redact_leaves(dict(variables), self.redactor) if self.redactor else dict(variables)
        ts = now()
        return self._enqueue(names.PROMPT_HISTORY, PromptRecord, dict(
            name=name, version=str(version), template=template,
            template_sha256=hashlib.sha256(template.encode()).hexdigest(), variables=vars_, user_id=user_id,
            principal_subject=principal_subject, created_at=ts, expires_at=ts + self.retention))

    async def log_feedback(self, conversation_id: str, user_id: Any, *, score: float, label: str | None,
                           comment: str | None, principal_subject: str) -> str | None:
        """A score on a trace (kept without expiry)."""
        if comment and self.redactor:
            comment = self.redactor(comment)
        return self._enqueue(names.FEEDBACK_SIGNALS, FeedbackSignal, dict(
            conversation_id=conversation_id, user_id=user_id, principal_subject=principal_subject, score=score,
            label=label, comment=comment))

    async def log_prediction(self, model: str, version: str, user_id: Any, inputs: Mapping[str, Any],
                             outputs: Mapping[str, Any], latency_ms: float) -> str | None:
        """A model output with its inputs (string leaves redacted)."""
        ins, outs = dict(inputs), dict(outputs)
        if self.redactor:
            ins, outs = _redact_leaves(ins, self.redactor), _redact_leaves(outs, self.redactor)
        return self._enqueue(names.MODEL_PREDICTIONS, ModelPrediction, dict(
            model=model, version=str(version), user_id=user_id, inputs=ins, outputs=outs, latency_ms=latency_ms))

    # --- buffer --------------------------------------------------------------------------------
    def _enqueue(self, collection: str, model: type[BaseModel], fields: dict[str, Any]) -> str | None:
        """Validate and buffer; InvalidData for bad input, None (and `dropped`+1) when the buffer is full."""
        try:
            doc = model.model_validate({"_id": new_id(), **fields}).to_mongo()  # type: ignore[attr-defined]
        except ValidationError as exc:
            bad = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
            raise InvalidData(f"{collection} record failed validation: {', '.join(bad)}", store="mongo") from exc
        ensure_safe(doc)
        check_size(doc, self.max_record_bytes, what=f"{collection} record")
        if len(self._buffer) >= self.buffer_size:
            self._dropped += 1
            log.warning("ai log buffer full (%d); record dropped", self.buffer_size)
            return None
        self._buffer.append((collection, doc))
        self._idle.clear()
        self._wake.set()
        return doc["_id"]

    async def _write_batch(self) -> bool:
        """Write the head of the buffer once; True when every record of it was written or refused for good.

        A transient error raises with the buffer untouched: the whole batch is retried (records already
        written come back as duplicate keys, which count as written).
        """
        batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
        if not batch:
            return True
        groups: dict[str, list[dict[str, Any]]] = {}
        for coll, doc in batch:
            groups.setdefault(coll, []).append(doc)
        refused: list[tuple[str, str]] = []
        for coll, docs in groups.items():
            refused += [(coll, reason) for reason in await self._insert(coll, docs)]
        for _ in batch:
            self._buffer.popleft()
        for coll, reason in refused:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1
            log.error("ai log: a %s record was refused by the server (%s) and dropped", coll, reason)
        self._failed += len(refused)
        self._written += len(batch) - len(refused)
        return True

    async def _insert(self, coll: str, docs: list[dict[str, Any]]) -> list[str]:
        """Insert `docs`; the reasons of those refused for good. Raises on a transient error."""
        target = self.db.get_collection(coll, write_concern=WriteConcern(w=1))
        try:
            await target.insert_many(docs, ordered=False)
            return []
        except BulkWriteError as exc:
            reasons = []
            for err in exc.details.get("writeErrors", []):
                if err.get("code") == DUPLICATE_KEY:
                    continue  # written before an acknowledgement was lost
                reason = _code_reason(err.get("code"), tuple(err.get("errorLabels", ())))
                if reason is None:
                    raise  # some records may succeed on a retry
                reasons.append(reason)
            return reasons
        except (PyMongoError, InvalidDocument) as exc:
            reason = classify(exc)
            if reason is None:
                raise
            if len(docs) == 1:
                return [reason]
        # The server (or the driver) refused the command as a whole: find the refused records one by one.
        out: list[str] = []
        for doc in docs:
            out += await self._insert(coll, [doc])
        return out

    async def _drain(self, stop_when_empty: bool) -> None:
        delay = 0.05
        while True:
            if not self._buffer:
                self._idle.set()
                if stop_when_empty or self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._lock:
                try:
                    await self._write_batch()
                    delay = 0.05
                except Exception as exc:  # transient (server down, not primary...): keep the batch, back off
                    self._retries += 1
                    log.warning("ai log write failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_delay)

    async def start(self) -> AILogger:
        """Start the background flusher (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._drain(stop_when_empty=False), name="ai-logger-flusher")
        return self

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every buffered record is written; False when `timeout` passed first."""
        try:
            if self._task is not None and not self._task.done():
                await asyncio.wait_for(self._idle.wait(), timeout)
            else:
                await asyncio.wait_for(self._drain(stop_when_empty=True), timeout)
        except TimeoutError:
            return False
        return not self._buffer

    async def stop(self, timeout: float = 30.0) -> LoggerStats:
        """Drain the buffer (up to `timeout`), then stop the flusher; returns the final stats."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._buffer:
            log.error("ai log stopped with %d records unwritten", len(self._buffer))
        return self.stats
