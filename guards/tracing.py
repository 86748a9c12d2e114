"""AI traces: every MCP call (tools/call, resources/read, prompts/get) is an observation of a trace.

A trace is the conversation the client names (`_meta["kredete/conversation_id"]`, or a tool's own
`conversation_id` argument once its scope rule has claimed it) or else one trace per MCP session and principal
(over HTTP, whose sessions are stateless, one per bearer token and principal).
A call may name its parent observation (`_meta["kredete/parent_id"]`, e.g. the turn it answers); a retrieval
inside a call is a child of it. The result's `_meta` tells the client `kredete/trace_id` and
`kredete/observation_id`, so feedback can score the trace or one observation.

Logging never blocks or fails a call: the guard hands a reference to the call's state to `TraceRecorder.end`, which
only appends it to a bounded queue (a full queue drops it and counts it). A background task, which waits for the
calls in flight before it starts on a short queue (a backlog it works off at once; a flush does not wait), builds
each observation in small steps that give the event loop back in between (a call's next step, or the answer a call
is waiting for, runs between two of them: the work fills the time the loop waits on the stores; making every step
wait for a moment without calls cost ~9 % of the calls/s with 8 clients in bench.mcp_scale). It claims the trace
for the caller (the
conversation owners of the credit store: another principal's trace is refused and the observation goes to the
caller's session trace), redacts the arguments and the output again with mask-everything (the stored copy never
keeps what a role may see unmasked; an output whose every finding the guard masked is stored as it left),
digests them, counts tokens and hands the documents to the AI logger, whose own
buffer retries and bounds the writes. `stop()` drains what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from guards.call import CallState, args_digest
from guards.metrics import REGISTRY
from guards.principal import Principal, Role

log = logging.getLogger("kredete.traces")

META_CONVERSATION = "kredete/conversation_id"
META_PARENT = "kredete/parent_id"
META_TRACE = "kredete/trace_id"
META_OBSERVATION = "kredete/observation_id"
#: Trace and observation ids a client may name (as the tools' conversation_id argument).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
GLOBAL_USER_ID = "00000000-0000-0000-0000-000000000000"
_SESSION_KEY = "kredete.traces"
#: Roles whose tool output was redacted with mask-everything already (the stored copy is the same).
_MASK_ALL_ROLES = frozenset({Role.CREDIT_COACH, Role.RISK_ANALYST})

DROPPED = Counter("kredete_trace_observations_dropped", "Trace observations dropped before reaching the AI "
                  "logger, by reason (queue_full, shutdown, invalid)", ["reason"], registry=REGISTRY)
QUEUED = Gauge("kredete_trace_queue", "Trace observations waiting to be redacted and handed to the AI logger",
               registry=REGISTRY)
REFUSED = Counter("kredete_trace_refused", "Calls that named a trace owned by another principal (logged under "
                  "the caller's own session trace instead)", registry=REGISTRY)
AI_LOG_DROPPED = Gauge("kredete_ai_log_dropped", "AI log records dropped by the logger (its buffer full), since "
                       "the process started", registry=REGISTRY)
AI_LOG_FAILED = Gauge("kredete_ai_log_failed", "AI log records the credit store refused for good, since the "
                      "process started", registry=REGISTRY)
AI_LOG_BUFFERED = Gauge("kredete_ai_log_buffered", "AI log records waiting for the credit store", registry=REGISTRY)


class Sink(Protocol):
    """The AI logger's public API (`stores.mongo.ai_logging.AILogger`)."""

    async def record(self, collection: str, model: type, fields: dict[str, Any]) -> str | None: ...

    async def record_many(self, items: list[tuple[str, type, dict[str, Any]]]) -> list[str | None]: ...

    async def log_prompt(self, name: str, version: str, template: str, variables: Mapping[str, Any], *,
                         user_id: Any, principal_subject: str) -> str | None: ...

    async def log_prediction(self, model: str, version: str, user_id: Any, inputs: Mapping[str, Any],
                             outputs: Mapping[str, Any], latency_ms: float) -> str | None: ...


class Owners(Protocol):
    """Conversation owners (`stores.mongo.conversations.ConversationOwners`)."""

    async def claim(self, conversation_id: str, owner: str, *, user_id: str, new: bool = False) -> bool: ...


@dataclass(frozen=True)
class PromptInfo:
    """A served prompt's version and template (from `agent_tools.prompts`)."""

    name: str
    version: str
    template: str
    sha256: str


@dataclass
class Retrieval:
    """A retrieval inside a call (a child observation and a model prediction)."""

    query: str
    mode: str
    fusion: str | None
    k: int
    results: list[tuple[str, float, str | None]]
    latency_ms: float
    model: str
    version: str
    index: str | None
    started_at: datetime


@dataclass
class Pending:
    """One call on its way to becoming an observation; built on the call path, finished in the background."""

    id: str
    kind: str
    started_at: datetime
    started: float
    meta_conversation: str | None
    meta_parent: str | None
    session: dict[str, Any] | None
    state: CallState | None = None
    result: Any = None
    latency_ms: float = 0.0
    trace_id: str = ""
    origin: str = "session"
    session_trace: str = ""
    #: `session_trace` was minted for this call (its first claim can insert without looking it up first).
    fresh_session: bool = False
    retrievals: list[Retrieval] = field(default_factory=list)
    turn: tuple[str, str] | None = None
    refused: bool = False
    token: contextvars.Token | None = None


current_observation: contextvars.ContextVar[Pending | None] = contextvars.ContextVar("kredete_observation",
                                                                                     default=None)


def record_retrieval(query: str, *, mode: str, k: int, results: list[tuple[str, float, str | None]],
                     latency_ms: float, fusion: str | None = None, model: str = "knowledge-retriever",
                     version: str = "", index: str | None = None) -> None:
    """A retrieval made by the current call: a child observation with its ranked results, and a model
    prediction (for comparing rankings across versions). Does nothing outside a traced call."""
    obs = current_observation.get()
    if obs is not None:
        obs.retrievals.append(Retrieval(query, mode, fusion, k, list(results), latency_ms, model, version, index,
                                        datetime.now(UTC)))


def record_turn(role: str, content: str, *, parent_id: str | None = None) -> str | None:
    """Make the current call's observation a conversation turn (`log_turn`): `role` and its text (redacted when
    written), under `parent_id` when given; the observation id, or None outside a traced call."""
    obs = current_observation.get()
    if obs is None:
        return None
    obs.turn = (role, content)
    if parent_id is not None and ID_PATTERN.match(parent_id):
        obs.meta_parent = parent_id
    return obs.id


def pseudonym(user_id: Any, key: bytes) -> str:
    """A customer's stable keyed pseudonym in traces (never the user id or the token subject)."""
    return "cust_" + hmac.new(key, f"trace-principal\0{user_id}".encode(), hashlib.sha256).hexdigest()[:20]


def trace_principal(p: Principal | None, key: bytes) -> dict[str, str]:
    if p is None:
        return {"role": "none", "id": "anonymous"}
    if p.role is Role.CUSTOMER:
        return {"role": p.role.value, "id": pseudonym(p.user_id, key)}
    return {"role": p.role.value, "id": p.subject}


def owner_of(p: Principal) -> str:
    """Who owns a conversation: the same owner the guard's conversation scope claims
    (`guards.access.conversation_owner`: a customer, or a staff role and subject)."""
    from guards.access import conversation_owner

    return conversation_owner(p)


def _status(decision: str) -> str:
    return decision if decision in ("allowed", "denied", "error", "rate_limited") else "error"


def _keyed(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _payload(kind: str, result: Any) -> Any:
    """The part of an MCP result that is the output (structured content, or the text/messages)."""
    if result is None:
        return None
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not isinstance(result, dict):
        return result
    if kind == "tool_call":
        if result.get("structuredContent") is not None and not result.get("isError"):
            return result["structuredContent"]
        return [c.get("text") for c in result.get("content") or [] if isinstance(c, dict)]
    if kind == "prompt":
        return [m.get("content", {}).get("text") for m in result.get("messages") or []]
    if kind == "resource_read":
        return [c.get("text") for c in result.get("contents") or [] if isinstance(c, dict)]
    return result


class TraceRecorder:
    """Turns finished calls into observations, off the call path (see the module docstring)."""

    def __init__(self, sink: Sink | None, *, digest_key: bytes, owners: Owners | None = None,
                 retention: timedelta = timedelta(days=90), queue_size: int = 10_000, max_output_bytes: int = 16_384,
                 transport: str = "stdio", exporter: Any = None, idle_wait_s: float = 0.5,
                 redact: Callable[[Any], tuple[Any, dict[str, int]]] | None = None,
                 count_tokens: Callable[[Any], int] | None = None, backlog: int = 64, linger_s: float = 0.1,
                 batch_size: int = 8) -> None:
        self.sink = sink
        self.key = digest_key
        self.owners = owners
        self.retention = retention
        self.queue_size = queue_size
        self.max_output_bytes = max_output_bytes
        self.transport = transport
        self.exporter = exporter
        self.idle_wait_s = idle_wait_s
        #: Queued observations past which the recorder no longer waits for a moment without calls.
        self.backlog = backlog
        #: Built observations are committed to the AI logger together: up to `batch_size` of them, once the queue
        #: has been empty for `linger_s` (a flush or stop does not wait): one local-queue transaction for several calls
        #: (few: the documents of a batch are validated and encoded in one step of the event loop).
        self.linger_s = linger_s
        self.batch_size = batch_size
        self._built: list[tuple[Pending, list[tuple[str, dict[str, Any]]]]] = []
        self._built_since = 0.0
        self.prompts: dict[str, PromptInfo] = {}
        self._redact = redact
        self._count_tokens = count_tokens
        self._queue: deque[Pending] = deque()
        self._claims: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._traces_written: OrderedDict[str, None] = OrderedDict()
        self._inflight = 0
        self._calls_idle = asyncio.Event()
        self._calls_idle.set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._flushing = 0
        self.dropped: dict[str, int] = {}
        self.written = 0
        self.refused = 0

    # --- the call path: cheap, never raises --------------------------------------------------------
    def begin(self, ctx: Any, kind: str) -> Pending | None:
        """Start the observation of one call (its id is known from here on; handlers add retrievals)."""
        try:
            meta = getattr(ctx, "meta", None) or {}
            conv, parent = meta.get(META_CONVERSATION), meta.get(META_PARENT)
            connection = getattr(getattr(ctx, "session", None), "_connection", None)
            session = getattr(connection, "state", None)
            # A canonical UUID: the output guard leaves it bare (a hex string would be delimited as free text).
            obs = Pending(id=str(uuid.uuid4()), kind=kind, started_at=datetime.now(UTC), started=time.perf_counter(),
                          meta_conversation=conv if isinstance(conv, str) and ID_PATTERN.match(conv) else None,
                          meta_parent=parent if isinstance(parent, str) and ID_PATTERN.match(parent) else None,
                          session=session if isinstance(session, dict) else None)
            obs.token = current_observation.set(obs)
            self._inflight += 1
            self._calls_idle.clear()
            return obs
        except Exception as exc:  # never let tracing fail a call
            log.warning("trace begin failed: %s", type(exc).__name__)
            return None

    def end(self, obs: Pending | None, state: CallState, result: Any) -> None:
        """Finish the observation: pick its trace, tell the client the ids, queue it (or drop and count it)."""
        if obs is None:
            return
        try:
            if obs.token is not None:
                with contextlib.suppress(ValueError):
                    current_observation.reset(obs.token)
            obs.latency_ms = (time.perf_counter() - obs.started) * 1000
            obs.state, obs.result = state, result
            self._pick_trace(obs, state)
            _tell_client(result, obs)
            if len(self._queue) >= self.queue_size:
                self._drop("queue_full")
            else:
                self._queue.append(obs)
                QUEUED.set(len(self._queue))
                self._idle.clear()
                self._wake.set()
        except Exception as exc:
            log.warning("trace end failed: %s", type(exc).__name__)
            self._drop("invalid")
        finally:
            self._inflight = max(0, self._inflight - 1)
            if self._inflight == 0:
                self._calls_idle.set()

    def _pick_trace(self, obs: Pending, state: CallState) -> None:
        p = state.principal
        owner = owner_of(p) if p is not None else "anonymous"
        traces = obs.session.setdefault(_SESSION_KEY, {}) if obs.session is not None else {}
        if owner not in traces:  # a new session
            if self.transport == "http" and p is not None:
                # Stateless HTTP: every request is a new session, so the token is: one trace per token and
                # principal, the same id in every request and worker (claimed and written once per process).
                traces[owner] = self._token_trace(owner, p)
            else:
                traces[owner], obs.fresh_session = f"mcp-{uuid.uuid4().hex}", True
        obs.session_trace = traces[owner]
        arg = state.arguments.get("conversation_id") if isinstance(state.arguments, dict) else None
        # A tool's own conversation_id argument was claimed by its scope rule only if the call was allowed.
        if state.decision == "allowed" and isinstance(arg, str) and ID_PATTERN.match(arg) and p is not None:
            obs.trace_id, obs.origin = arg, "conversation"
        elif obs.meta_conversation and p is not None and self._claims.get((owner, obs.meta_conversation)) is not False:
            obs.trace_id, obs.origin = obs.meta_conversation, "conversation"
        else:
            if obs.meta_conversation and p is not None:  # known to be another principal's trace
                obs.refused, obs.meta_parent = True, None
                self.refused += 1
                REFUSED.inc()
            obs.trace_id, obs.origin = obs.session_trace, "session"

    def _token_trace(self, owner: str, p: Principal) -> str:
        """The session trace of a bearer token (keyed: neither the token id nor the owner can be read from it)."""
        return "mcp-" + _keyed(self.key, f"session\0{owner}\0{p.issuer}\0{p.token_id}".encode())[:32]

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        DROPPED.labels(reason=reason).inc(n)

    # --- background ----------------------------------------------------------------------------------
    async def start(self) -> TraceRecorder:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="trace-recorder")
        return self

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued observation was handed to the AI logger (meanwhile its steps no longer wait for
        moments without calls); False on timeout."""
        self._flushing += 1
        self._calls_idle.set()
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._flushing -= 1
            if self._inflight:
                self._calls_idle.clear()
        return not self._queue

    async def stop(self, timeout: float = 30.0) -> None:
        """Hand what is queued to the AI logger (up to `timeout`); what is left is dropped and counted."""
        self._stopping = True
        self._wake.set()
        self._calls_idle.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._queue or self._built:
            left = len(self._queue) + len(self._built)
            self._drop("shutdown", left)
            log.error("trace recorder stopped with %d observations unwritten", left)
            self._queue.clear()
            self._built.clear()
        if self.exporter is not None:
            with contextlib.suppress(Exception):
                self.exporter.shutdown()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            if not self._queue and self._built:
                left = self._linger_left()
                if not (self._stopping or self._flushing) and left > 0 and len(self._built) < self.batch_size:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
                    if self._queue and not (self._stopping or self._flushing):
                        continue  # more calls came in: they join this batch
                await self._commit()
                continue
            if not self._queue:
                self._idle.set()
                QUEUED.set(0)
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._between_calls()
            obs = self._queue[0]
            try:
                await self._claim(obs)
            except Exception as exc:  # the credit store is unreachable: keep the observation, retry later
                if self._stopping and delay >= 1.0:
                    return
                log.warning("trace owner claim failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._queue.popleft()
            QUEUED.set(len(self._queue))
            try:
                docs = await self._build(obs)
                if not self._built:
                    self._built_since = asyncio.get_running_loop().time()
                self._built.append((obs, docs))
            except Exception as exc:
                log.error("trace observation dropped: %s", type(exc).__name__, exc_info=exc)
                self._drop("invalid")
            if len(self._built) >= self.batch_size:
                await self._commit()
            await asyncio.sleep(0)  # let a call that just arrived run first

    async def _between_calls(self) -> None:
        """Calls first: the logging work on an observation waits (a bounded time) until no call is in flight; a
        backlog is worked off at once (the queue stays bounded under a steady load that is never idle), and so is
        everything while a flush or stop waits for it."""
        if not (self._stopping or self._flushing) and self._inflight and len(self._queue) < self.backlog:
            loop = asyncio.get_running_loop()
            until = loop.time() + self.idle_wait_s
            while (wait := until - loop.time()) > 0:
                # What is built already is committed once it has lingered, calls in flight or not.
                committing = bool(self._built) and self._linger_left() < wait
                try:
                    await asyncio.wait_for(self._calls_idle.wait(), self._linger_left() if committing else wait)
                    return
                except TimeoutError:
                    if not committing:
                        return
                    await self._commit()
        else:
            await asyncio.sleep(0)

    def _linger_left(self) -> float:
        """Seconds until the oldest built observation has waited `linger_s` for others to share its commit."""
        return self._built_since + self.linger_s - asyncio.get_running_loop().time()

    async def _claim(self, obs: Pending) -> None:
        """Make sure the caller owns the trace; another principal's trace is refused (session trace instead)."""
        p = obs.state.principal if obs.state else None
        if p is None or self.owners is None:
            return
        owner = owner_of(p)
        user = str(p.user_id) if p.user_id else GLOBAL_USER_ID
        for trace_id in dict.fromkeys((obs.trace_id, obs.session_trace)):
            key = (owner, trace_id)
            if key not in self._claims:
                fresh = trace_id == obs.session_trace and obs.fresh_session
                self._claims[key] = await self.owners.claim(trace_id, owner, user_id=user, new=fresh)
                if len(self._claims) > 50_000:
                    self._claims.popitem(last=False)
            if trace_id == obs.trace_id and not self._claims[key]:
                self.refused += 1
                REFUSED.inc()
                obs.trace_id, obs.origin = obs.session_trace, "session"
                obs.meta_parent = None
                obs.refused = True
            if trace_id == obs.trace_id:
                break

    # --- building the documents (redacted values only) ----------------------------------------------
    def _redacted(self, value: Any) -> tuple[Any, dict[str, int]]:
        if self._redact is None:
            from guards.redaction import redact_value

            self._redact = redact_value
        return self._redact(value)

    def _tokens(self, value: Any) -> int:
        if self._count_tokens is None:
            from guards.budget import count_tokens

            self._count_tokens = count_tokens
        return self._count_tokens(value)

    def documents(self, obs: Pending) -> list[tuple[str, dict[str, Any]]]:
        """(kind, fields) of the trace (first time), the observation and its children."""
        steps = self._documents(obs)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def _documents(self, obs: Pending) -> Generator[None, None, list[tuple[str, dict[str, Any]]]]:
        """`documents`, yielding after each costly step (redacting, counting tokens) so the caller can give the
        event loop back in between; returns the documents."""
        from stores.mongo import collections as names

        state = obs.state
        p = state.principal
        principal = trace_principal(p, self.key)
        user = str(p.user_id) if p is not None and p.user_id else GLOBAL_USER_ID
        now = datetime.now(UTC)
        expires = now + self.retention
        out: list[tuple[str, dict[str, Any]]] = []
        if obs.trace_id not in self._traces_written:
            self._traces_written[obs.trace_id] = None
            if len(self._traces_written) > 50_000:
                self._traces_written.popitem(last=False)
            out.append((names.TRACES, {"_id": obs.trace_id, "user_id": user, "principal": principal,
                                       "origin": obs.origin, "transport": self.transport, "created_at": now,
                                       "expires_at": expires}))
        redactions = dict(state.redactions)

        def add(counts: dict[str, int]) -> None:
            for k, n in counts.items():
                redactions[str(k)] = redactions.get(str(k), 0) + n

        kind = obs.kind
        name = state.tool if kind == "tool_call" else (state.resource or "unknown")
        metadata: dict[str, Any] = {}
        if obs.refused:
            metadata["refused_trace"] = True
        if state.truncated:
            metadata["truncated"] = True
        # Arguments: redacted for the stored copy; the digest is the audit row's (same key, same canonical form).
        raw_args = state.arguments if kind == "tool_call" else (state.arguments or {}).get("arguments", {})
        arguments, counts = self._redacted(raw_args or {})
        add(counts)
        yield
        if kind == "prompt" and state.resource in self.prompts:
            info = self.prompts[state.resource]
            metadata.update(prompt_version=info.version, template_sha256=info.sha256)
        output: Any = None
        payload = _payload(kind, obs.result)
        canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")).encode()
        stored = False
        if obs.turn is not None:
            kind, name = "turn", obs.turn[0]
            text, counts = self._redacted(obs.turn[1])
            add(counts)
            output, stored, tokens = text, True, self._tokens(text)
            canonical = text.encode()
        else:
            tokens = self._tokens(payload) if payload is not None else 0
            yield
            if payload is not None and len(canonical) <= self.max_output_bytes:
                if p is not None and (p.role in _MASK_ALL_ROLES or (kind == "tool_call"
                                                                    and _masked_on_the_way_out(state))):
                    output = payload  # every finding masked on the way out already: the stored copy is the same
                else:
                    output, counts = self._redacted(payload)
                    add(counts)
                    yield
                stored = True
        def rename(value: Any) -> Any:
            """The customer's own id inside a value (get_wallet_balances' user_id, a citation of their credit
            report) becomes their pseudonym too."""
            if p is not None and p.role is Role.CUSTOMER and p.user_id:
                return _replace_text(value, str(p.user_id), principal["id"])
            return value

        arguments, output = rename(arguments), rename(output)
        fields = {
            "_id": obs.id, "trace_id": obs.trace_id, "parent_id": obs.meta_parent, "user_id": user,
            "principal": principal, "kind": kind, "name": name[:500], "status": _status(state.decision),
            "reason": (state.reason or None) and state.reason[:500], "request_id": state.request_id,
            "args_digest": args_digest(state.arguments, self.key),
            "requested_name_digest": (args_digest({"name": state.requested_name}, self.key)
                                      if state.requested_name is not None else None),
            "arguments": arguments if isinstance(arguments, dict) else {"value": arguments},
            "output": output, "output_stored": stored, "output_bytes": len(canonical),
            "output_digest": _keyed(self.key, canonical) if payload is not None or obs.turn else None,
            "redactions": redactions, "tokens": tokens, "latency_ms": round(obs.latency_ms, 3),
            "metadata": metadata, "started_at": obs.started_at, "created_at": now, "expires_at": expires,
        }
        out.append((names.TRACE_OBSERVATIONS, fields))
        for r in obs.retrievals:
            yield
            query, counts = self._redacted(r.query)
            out.append((names.TRACE_OBSERVATIONS, {
                "_id": str(uuid.uuid4()), "trace_id": obs.trace_id, "parent_id": obs.id, "user_id": user,
                "principal": principal, "kind": "retrieval", "name": f"{r.mode}" + (f"/{r.fusion}" if r.fusion else ""),
                "status": "ok", "arguments": {"query": query, "k": r.k, "mode": r.mode},
                "results": [{"rank": i + 1, "id": rename(rid), "score": round(float(score), 6), "doc_type": dt}
                            for i, (rid, score, dt) in enumerate(r.results[:200])],
                "redactions": counts, "tokens": self._tokens(query), "latency_ms": round(r.latency_ms, 3),
                "metadata": {"index": r.index, "model": r.model, "version": r.version, "fusion": r.fusion},
                "started_at": r.started_at, "created_at": now,
                "expires_at": expires}))
        return out

    async def _build(self, obs: Pending) -> list[tuple[str, dict[str, Any]]]:
        steps = self._documents(obs)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            await asyncio.sleep(0)  # a call's next step first

    async def _commit(self) -> None:
        """Hand the built observations to the AI logger: their documents in one commit to its queue (all validated
        before any is queued); when that is refused, each observation on its own, so one invalid observation is
        dropped alone."""
        from stores.mongo import collections as names
        from stores.mongo.trace_documents import Observation, TraceDoc

        built, self._built = self._built, []
        models = {names.TRACES: TraceDoc, names.TRACE_OBSERVATIONS: Observation}

        def items(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, type, dict[str, Any]]]:
            return [(coll, models[coll], fields) for coll, fields in docs]

        together = True
        if self.sink is not None:
            try:
                await self.sink.record_many([item for _, docs in built for item in items(docs)])
            except Exception:
                together = False
        for obs, docs in built:
            try:
                if not together and self.sink is not None:
                    await self.sink.record_many(items(docs))
                await self._after(obs, docs)
            except Exception as exc:
                log.error("trace observation dropped: %s", type(exc).__name__, exc_info=exc)
                self._drop("invalid")

    async def _after(self, obs: Pending, docs: list[tuple[str, dict[str, Any]]]) -> None:
        """What follows an observation's documents: the prompt use, the retrieval predictions, the export."""
        from stores.mongo import collections as names

        self.written += 1
        state = obs.state
        p = state.principal
        user = str(p.user_id) if p is not None and p.user_id else GLOBAL_USER_ID
        principal_id = trace_principal(p, self.key)["id"]
        if self.sink is not None and obs.kind == "prompt" and state.resource in self.prompts \
                and state.decision == "allowed":
            info = self.prompts[state.resource]
            variables, _ = self._redacted((state.arguments or {}).get("arguments") or {})
            await self.sink.log_prompt(info.name, info.version, info.template, variables, user_id=user,
                                       principal_subject=principal_id)
        for (coll, fields) in docs:
            if self.sink is not None and coll == names.TRACE_OBSERVATIONS and fields["kind"] == "retrieval":
                meta = fields["metadata"]
                await self.sink.log_prediction(
                    f"{meta.get('model') or 'retrieval'}:{fields['name']}", meta.get("version") or "0", user,
                    {"query": fields["arguments"]["query"], "k": fields["arguments"]["k"],
                     "trace_id": fields["trace_id"], "observation_id": fields["_id"]},
                    {"ranked": fields["results"]}, fields["latency_ms"])
        if self.exporter is not None:
            for coll, fields in docs:
                if coll == names.TRACE_OBSERVATIONS:
                    self.exporter.export(fields)


@functools.cache
def _shown_kinds(role: Role) -> frozenset[str]:
    """The PII kinds `role`'s redaction policy shows in part or in full rather than masking them."""
    from guards.redaction import role_policy
    from guards.redaction.masking import Action

    return frozenset(str(k) for k, a in role_policy(role.value).actions.items() if a != Action.MASK)


def _masked_on_the_way_out(state: CallState) -> bool:
    """Whether the output guard's redaction of this tool call already is the stored copy's mask-everything one:
    an allowed, masked call of a staff role whose output held no PII of a kind that role sees in part (a
    customer's own names stay readable to them, so a customer's output is redacted again; a resource or a prompt
    never passed the output guard). The output is then stored as it left; redacting it again would count its
    findings twice (and strip the «data» marks around a masked name)."""
    p = state.principal
    if p is None or p.role is Role.CUSTOMER or state.unmasked or state.decision != "allowed":
        return False
    return not (_shown_kinds(p.role) & {str(k) for k in state.redactions})


def _replace_text(value: Any, old: str, new: str) -> Any:
    """`value` with `old` replaced by `new` in every string (keys included) of a nested dict/list."""
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, dict):
        return {_replace_text(k, old, new): _replace_text(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_text(v, old, new) for v in value]
    return value


def _tell_client(result: Any, obs: Pending) -> None:
    """Put the trace and observation ids into the result's `_meta` (feedback can then score either)."""
    ids = {META_TRACE: obs.trace_id, META_OBSERVATION: obs.id}
    if isinstance(result, dict):
        result.setdefault("_meta", {}).update(ids)
    elif result is not None and hasattr(result, "meta"):
        try:
            result.meta = {**(result.meta or {}), **ids}
        except Exception:  # a frozen model: the ids are only in the trace then
            log.debug("result _meta not writable")


def watch_logger(logger: Any) -> None:
    """Expose the AI logger's counters (dropped, refused for good, buffered) on the guards' /metrics."""
    AI_LOG_DROPPED.set_function(lambda: logger.stats.dropped)
    AI_LOG_FAILED.set_function(lambda: logger.stats.failed)
    AI_LOG_BUFFERED.set_function(lambda: logger.stats.buffered)
