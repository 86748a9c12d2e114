"""MCP server middleware: authenticate, authorise, rate-limit and audit every `tools/call`."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from guards.errors import BadInput, GuardError, Unauthenticated
from guards.metrics import AUDIT_FAILURES, record_call
from guards.pipeline import CallState, current_call, new_call_state
from guards.policy import authorize
from guards.principal import Principal

log = logging.getLogger("kredete.guards")

#: Methods that read data and so need a principal; listing what exists does not.
_AUTHENTICATED_METHODS = frozenset({"resources/read", "prompts/get"})


class GuardRuntime(Protocol):
    tool_names: frozenset[str]
    input_models: dict[str, type[BaseModel]]

    async def authenticate(self, ctx: Any) -> Principal: ...

    async def rate_limit(self, principal: Principal, tool: str) -> None: ...

    async def audit(self, state: CallState) -> bool: ...


def _error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def _is_error(result: Any) -> bool:
    if isinstance(result, CallToolResult):
        return bool(result.is_error)
    if isinstance(result, dict):
        return bool(result.get("isError") or result.get("is_error"))
    return False


def _validate(model: type[BaseModel], arguments: dict[str, Any]) -> None:
    """Validate here, not only in the SDK, so the message names fields and rules but never echoes values."""
    try:
        model.model_validate(arguments)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False)[:10]:
            loc = ".".join(str(p) for p in err["loc"]) or "arguments"
            problems.append(f"{loc}: {err['msg']}")
        raise BadInput("invalid arguments: " + "; ".join(problems)) from None


class GuardMiddleware:
    """Outer guard steps. The runtime is looked up per request so tests can swap it."""

    def __init__(self, runtime_getter) -> None:
        self._runtime_getter = runtime_getter

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method in _AUTHENTICATED_METHODS:
            runtime: GuardRuntime = self._runtime_getter()
            await runtime.authenticate(ctx)  # raises: the SDK turns it into a protocol error
            return await call_next(ctx)
        if ctx.method != "tools/call":
            return await call_next(ctx)
        runtime = self._runtime_getter()
        params = dict(ctx.params or {})
        name = str(params.get("name") or "")[:100]
        arguments = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        state = new_call_state(name, arguments)
        token = current_call.set(state)
        try:
            return await self._guarded(ctx, call_next, runtime, name, arguments, state)
        finally:
            current_call.reset(token)
            tool_label = name if name in runtime.tool_names else "unknown"
            record_call(tool_label, state.decision, time.perf_counter() - state.started, state.redactions)

    async def _guarded(self, ctx: Any, call_next: Any, runtime: GuardRuntime, name: str,
                       arguments: dict[str, Any], state: CallState) -> Any:
        try:
            state.principal = await runtime.authenticate(ctx)
            if name not in runtime.tool_names:
                raise BadInput(f"unknown tool '{name}'")
            authorize(state.principal, name)
            await runtime.rate_limit(state.principal, name)
            _validate(runtime.input_models[name], arguments)
        except GuardError as exc:
            state.decision, state.reason = exc.decision, exc.message
            await runtime.audit(state)
            return _error_result(exc.message)
        try:
            result = await call_next(ctx)
        except Exception as exc:  # protocol-level failure (e.g. malformed params)
            state.decision, state.reason = "denied", f"rejected by the protocol layer ({type(exc).__name__})"
            await runtime.audit(state)
            raise
        if _is_error(result) and state.decision == "allowed":
            state.decision, state.reason = "error", state.reason or "tool reported an error"
        if not await runtime.audit(state) and not _is_error(result):
            # Fail closed: data is never returned without its audit row.
            AUDIT_FAILURES.inc()
            state.decision = "error"
            return _error_result("the call could not be audited, so no data was returned; try again shortly")
        return result


__all__ = ["GuardMiddleware", "GuardRuntime", "Unauthenticated"]
