"""Outer guard steps.

* `GuardMiddleware` (MCP SDK middleware): authenticate → rate limit (per identity, before the tool is looked
  up or authorised) → known tool? → authorise → validate → [write tools: audit row first] → run → audit, for
  every `tools/call`; `resources/read` and `prompts/get` are authenticated, rate limited and audited too.
* `HttpAuthGuard` (ASGI, around the streamable HTTP app): every request to /mcp that the SDK refuses (401/403:
  no Authorization header, another scheme, a forged, expired or too long-lived token) is audited, failed
  authentications are rate limited per client IP (429 with Retry-After past the limit), and identical refusals
  are aggregated (the first per IP, reason and window at once, the rest as one row with their count).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from mcp_types.jsonrpc import INVALID_REQUEST
from pydantic import BaseModel, ValidationError

from config.logs import request_context
from guards.call import CallState, current_call, new_call_state
from guards.errors import BadInput, GuardError, Unauthenticated, Unavailable
from guards.metrics import AUDIT_FAILURES, record_call
from guards.pipeline import parse_arguments
from guards.principal import Principal

log = logging.getLogger("kredete.guards")

#: Methods that read something and so are authenticated, rate limited and audited (besides tools/call).
_AUDITED_READS = frozenset({"resources/read", "prompts/get"})
UNKNOWN = "unknown"
NOT_AUDITED = "the call could not be audited, so no data was returned; try again shortly"
NOT_AUDITED_WRITE = "the call could not be audited, so nothing was written; try again shortly"


class GuardRuntime(Protocol):
    """What the middleware needs of the process's guards (`guards.gate.Gate`)."""

    tool_names: frozenset[str]
    input_models: dict[str, type[BaseModel]]
    write_tools: frozenset[str]

    async def authenticate(self, ctx: Any) -> Principal: ...

    async def rate_limit(self, principal: Principal, tool: str) -> str | None: ...

    def authorize(self, principal: Principal, tool: str) -> None: ...

    async def audit(self, state: CallState) -> bool: ...


def _error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def _is_error(result: Any) -> bool:
    if isinstance(result, CallToolResult):
        return bool(result.is_error)
    if isinstance(result, dict):
        return bool(result.get("isError") or result.get("is_error"))
    return False


def _validate(model: type[BaseModel], arguments: dict[str, Any]) -> BaseModel:
    """Validate here, not in the SDK, so the message names fields and rules but never echoes values."""
    try:
        return parse_arguments(model, arguments)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False)[:10]:
            loc = ".".join(str(p) for p in err["loc"]) or "arguments"
            problems.append(f"{loc}: {err['msg']}")
        raise BadInput("invalid arguments: " + "; ".join(problems)) from None


def _as_guard_error(exc: Exception) -> GuardError:
    """A guard's own refusal as it is; anything else raised by an outer step (a store or the rate limiter's
    Redis failing in a way not handled below it) is the designed `Unavailable`: audited like any refusal,
    and never the driver's text, an address or a stack trace."""
    if isinstance(exc, GuardError):
        return exc
    log.error("a guard step failed: %s", type(exc).__name__)
    return Unavailable()


async def _rate_limit(runtime: GuardRuntime, state: CallState, label: str) -> None:
    status = await runtime.rate_limit(state.principal, label)
    if status in ("exempt", "degraded"):  # degraded: Redis failed, the in-process limiter decided
        state.extra["rate_limit"] = status


def _sessions_used(runtime: GuardRuntime, state: CallState) -> None:
    """The PostgreSQL sessions the call used (server, backend pid, checkout and release times) into its audit row:
    the servers' logs name a session by its pid and time, so `ops slow-queries --log` attributes them to the call
    (`kredete.ops.slowlog`). Recorded before the row is written: the tool's statements have all run by then."""
    used = getattr(runtime, "call_sessions", None)
    sessions = used() if used is not None else None
    if sessions:
        state.extra["pg_sessions"] = sessions


class GuardMiddleware:
    """The guards (`runtime_getter()`, a `GuardRuntime`) are looked up per request so tests can swap them.
    `catalog` (the MCPServer, set after it is built) lists the resources and prompts, so audit rows name only
    known ones."""

    def __init__(self, runtime_getter, catalog: Any = None) -> None:
        self._runtime_getter = runtime_getter
        self.catalog = catalog
        self._known: tuple[frozenset[str], list[tuple[re.Pattern[str], str]], frozenset[str]] | None = None

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method in _AUDITED_READS:
            return await self._audited_read(ctx, call_next, self._runtime_getter())
        if ctx.method != "tools/call":
            return await call_next(ctx)
        runtime: GuardRuntime = self._runtime_getter()
        params = dict(ctx.params or {})
        name = str(params.get("name") or "")
        arguments = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        known = name in runtime.tool_names
        # An unknown name is caller text (possibly an injection or PII): it is never stored or echoed; the
        # audit row says "unknown" and carries a keyed digest of it.
        state = new_call_state(name if known else UNKNOWN, arguments)
        if not known:
            state.requested_name = name[:10_000]
        token = current_call.set(state)
        # Every call is an observation of a trace (guards.tracing): queued here, written in the background.
        tracer = getattr(runtime, "tracer", None)
        obs = tracer.begin(ctx, "tool_call") if tracer is not None else None
        result = None
        # A known tool's database sessions are recorded for its audit row (`_sessions_used`).
        scope = getattr(runtime, "session_scope", None) if known else None
        with request_context(state.request_id):  # in every log line
            try:
                async with scope(name) if scope is not None else contextlib.nullcontext():
                    result = await self._guarded(ctx, call_next, runtime, name, known, arguments, state)
                return result
            finally:
                current_call.reset(token)
                record_call(state.tool, state.decision, time.perf_counter() - state.started, state.redactions)
                log.info("tool call", extra={"tool": state.tool, "decision": state.decision,
                                             "latency_ms": round((time.perf_counter() - state.started) * 1000, 1)})
                if tracer is not None:
                    tracer.end(obs, state, result)

    async def _guarded(self, ctx: Any, call_next: Any, runtime: GuardRuntime, name: str, known: bool,
                       arguments: dict[str, Any], state: CallState) -> Any:
        write = name in getattr(runtime, "write_tools", frozenset())
        try:
            state.principal = await runtime.authenticate(ctx)
            # Before lookup and authorisation: unknown and forbidden calls spend quota too.
            await _rate_limit(runtime, state, state.tool)
            if not known:
                raise BadInput("unknown tool; list the available tools with tools/list")
            runtime.authorize(state.principal, name)
            state.parsed_arguments = _validate(runtime.input_models[name], arguments)
        except Exception as exc:
            exc = _as_guard_error(exc)
            state.decision, state.reason = exc.decision, exc.message
            await runtime.audit(state)
            return _error_result(exc.message)
        if write:
            # Fail closed for writes: the audit row is written before the write, or the write does not happen.
            state.extra["phase"] = "intent"
            if not await runtime.audit(state):
                AUDIT_FAILURES.inc()
                state.decision = "error"
                return _error_result(NOT_AUDITED_WRITE)
            state.extra["phase"] = "outcome"
        try:
            result = await call_next(ctx)
        except Exception as exc:  # protocol-level failure (e.g. malformed params)
            state.decision, state.reason = "denied", f"rejected by the protocol layer ({type(exc).__name__})"
            _sessions_used(runtime, state)
            await runtime.audit(state)
            raise
        _sessions_used(runtime, state)
        if _is_error(result) and state.decision == "allowed":
            state.decision, state.reason = "error", state.reason or "tool reported an error"
        if not await runtime.audit(state) and not _is_error(result):
            AUDIT_FAILURES.inc()
            if write:  # the write already has its (intent) audit row: report what happened
                return result
            # Fail closed: data is never returned without its audit row.
            state.decision = "error"
            return _error_result(NOT_AUDITED)
        return result

    # --- resources/read and prompts/get -----------------------------------------------------------------
    async def _catalog(self) -> tuple[frozenset[str], list[tuple[re.Pattern[str], str]], frozenset[str]]:
        if self._known is None:
            if self.catalog is None:
                return frozenset(), [], frozenset()
            uris = frozenset(str(r.uri) for r in await self.catalog.list_resources())
            templates = [(re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(t.uri_template))), t.uri_template)
                         for t in await self.catalog.list_resource_templates()]
            prompts = frozenset(p.name for p in await self.catalog.list_prompts())
            self._known = (uris, templates, prompts)
        return self._known

    async def _label(self, method: str, raw: str) -> str:
        """The resource the audit row names: a known URI, the template a URI matched, a known prompt name,
        or "unknown" (the raw value is caller text: only its digest is kept)."""
        uris, templates, prompts = await self._catalog()
        if method == "prompts/get":
            return raw if raw in prompts else UNKNOWN
        if raw in uris:
            return raw
        return next((tpl for rx, tpl in templates if rx.fullmatch(raw)), UNKNOWN)

    async def _audited_read(self, ctx: Any, call_next: Any, runtime: GuardRuntime) -> Any:
        params = dict(ctx.params or {})
        raw = str((params.get("uri") if ctx.method == "resources/read" else params.get("name")) or "")
        args = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        state = new_call_state(ctx.method, {"target": raw, "arguments": args})
        state.resource = await self._label(ctx.method, raw)
        if state.resource != raw:
            state.requested_name = raw[:10_000]
        tracer = getattr(runtime, "tracer", None)
        obs = tracer.begin(ctx, "prompt" if ctx.method == "prompts/get" else "resource_read") if tracer else None
        result = None
        with request_context(state.request_id):
            try:
                result = await self._read_guarded(ctx, call_next, runtime, state)
                return result
            finally:
                record_call(ctx.method, state.decision, time.perf_counter() - state.started, {})
                if tracer is not None:
                    tracer.end(obs, state, result)

    async def _read_guarded(self, ctx: Any, call_next: Any, runtime: GuardRuntime, state: CallState) -> Any:
        try:
            state.principal = await runtime.authenticate(ctx)
            await _rate_limit(runtime, state, ctx.method)
        except Exception as exc:
            exc = _as_guard_error(exc)
            state.decision, state.reason = exc.decision, exc.message
            await runtime.audit(state)
            raise MCPError(code=INVALID_REQUEST, message=exc.message) from None
        try:
            result = await call_next(ctx)
        except Exception as exc:
            state.decision = "denied" if isinstance(exc, MCPError | ValidationError) else "error"
            state.reason = "not found or invalid" if state.decision == "denied" else type(exc).__name__
            await runtime.audit(state)
            raise
        if not await runtime.audit(state):
            AUDIT_FAILURES.inc()
            state.decision = "error"  # the metric's label; the row could not be written
            raise MCPError(code=INVALID_REQUEST, message=NOT_AUDITED)
        return result


# --- HTTP: refused requests ---------------------------------------------------------------------------

@dataclass
class _AuthAttempt:
    """Filled in by the token verifier during one HTTP request (the reason it refused the token)."""

    error: Unauthenticated | None = None


_attempt: contextvars.ContextVar[_AuthAttempt | None] = contextvars.ContextVar("kredete_auth_attempt",
                                                                              default=None)


async def record_token_failure(exc: Unauthenticated) -> None:
    """`KredeteTokenVerifier(on_failure=...)`: remember why this request's token was refused."""
    attempt = _attempt.get()
    if attempt is not None:
        attempt.error = exc


def _refusal(scope: dict[str, Any], attempt: _AuthAttempt) -> tuple[str, str]:
    """(code, reason) of a refused request: the verifier's, or what the Authorization header shows."""
    if attempt.error is not None:
        return attempt.error.code, attempt.error.message
    header = next((v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"), None)
    if header is None:
        return "missing_authorization", "authentication required: no Authorization header"
    if not header.lower().startswith(b"bearer "):
        return "unsupported_scheme", "authentication required: the Authorization scheme must be Bearer"
    return "invalid_token", Unauthenticated.public_message


@dataclass
class _Pending:
    key: str
    window_end_ms: int
    code: str
    reason: str
    decision: str
    client: str


class HttpAuthGuard:
    """ASGI wrapper of the streamable HTTP app: audits and rate-limits refused requests to `path`.

    `runtime.rate_limiter` counts failures per client IP in Redis (`RateLimiter.auth_failure`); the audit rows
    (action `http:authenticate`, actor `anonymous`) carry the reason code, the client IP and how they were
    aggregated: `aggregate: first` for the first identical refusal of a window (written at once) and
    `aggregate: window` with `count` (all identical refusals of that window) when the window has ended,
    or at shutdown. So a flood costs at most two rows per IP, reason, outcome and window.
    The client IP is the socket peer, or, when the peer is one of the configured reverse proxies
    (`KREDETE_TRUSTED_PROXIES`, none by default), the address its X-Forwarded-For names (uvicorn resolves it
    before this guard runs).
    """

    def __init__(self, app: Any, runtime: Any, *, path: str = "/mcp") -> None:
        self.app = app
        self.runtime = runtime
        self.path = path
        self._pending: dict[str, _Pending] = {}
        self._flusher: asyncio.Task | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, self._on_shutdown(receive), send)
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.path):
            return await self.app(scope, receive, send)
        attempt = _AuthAttempt()
        token = _attempt.set(attempt)
        replaced = False

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal replaced
            if replaced:
                return  # the inner app's 401 body: we already answered
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                retry = await self._refused(scope, attempt)
                if retry is not None:
                    replaced = True
                    await _send_429(send, retry)
                    return
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        finally:
            _attempt.reset(token)

    async def _refused(self, scope: dict[str, Any], attempt: _AuthAttempt) -> float | None:
        """Count and audit one refusal; the Retry-After seconds when the client is over its limit."""
        code, reason = _refusal(scope, attempt)
        client = (scope.get("client") or ("unknown", 0))[0]
        limiter = getattr(self.runtime, "rate_limiter", None)
        outcome = None
        if limiter is not None:
            try:
                outcome = await limiter.auth_failure(client, code)
            except Exception as exc:  # Redis down: the refusal still stands and is audited, unaggregated
                log.warning("auth failure limiter unavailable: %s", type(exc).__name__)
        if outcome is None:
            await self._audit(code, reason, "denied", client, {"aggregate": "none"})
            return None
        if outcome.count_in_window == 1:
            await self._audit(code, reason, outcome.decision, client, {"aggregate": "first"})
        self._track(_Pending(outcome.aggregate_key, outcome.window_end_ms, code, reason, outcome.decision, client))
        return None if outcome.admitted else outcome.retry_after_s

    async def _audit(self, code: str, reason: str, decision: str, client: str, extra: dict[str, Any]) -> None:
        state = new_call_state("http:authenticate", {})
        state.decision = decision
        state.reason = reason if decision == "denied" else f"too many failed authentications ({reason})"
        state.extra.update({"reason_code": code, "client_ip": client, **extra})
        if not await self.runtime.audit(state):
            AUDIT_FAILURES.inc()
        record_call("http:authenticate", decision, 0.0, {})

    # --- aggregated rows: one per finished window ---------------------------------------------------
    def _track(self, pending: _Pending) -> None:
        self._pending.setdefault(pending.key, pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._pending:
            due = min(p.window_end_ms for p in self._pending.values())
            await asyncio.sleep(max(0.0, due / 1000 - time.time()) + 0.05)
            now_ms = time.time() * 1000
            await self.flush([p for p in self._pending.values() if p.window_end_ms <= now_ms])

    async def flush(self, items: list[_Pending] | None = None) -> None:
        """Write the count row of each given (default: every pending) window that no other process wrote."""
        limiter = getattr(self.runtime, "rate_limiter", None)
        for p in list(self._pending.values()) if items is None else items:
            self._pending.pop(p.key, None)
            if limiter is None:
                continue
            try:
                count = await limiter.claim_aggregate(p.key)
            except Exception as exc:
                log.warning("auth failure aggregate %s lost: %s", p.decision, type(exc).__name__)
                continue
            if count and count > 1:
                await self._audit(p.code, p.reason, p.decision, p.client,
                                  {"aggregate": "window", "count": count, "window_ms": limiter.limits.window_ms})

    def _on_shutdown(self, receive: Any) -> Any:
        async def wrapped() -> dict[str, Any]:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                if self._flusher is not None:
                    self._flusher.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._flusher
                try:
                    await self.flush()
                except Exception as exc:
                    log.warning("auth failure aggregates not flushed at shutdown: %s", type(exc).__name__)
            return message

        return wrapped


async def _send_429(send: Any, retry_after_s: float) -> None:
    seconds = max(1, math.ceil(retry_after_s))
    body = json.dumps({"error": "too_many_requests",
                       "error_description": f"too many failed authentications; retry after {seconds}s"}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(seconds).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["GuardMiddleware", "GuardRuntime", "HttpAuthGuard", "Unauthenticated", "record_token_failure"]
