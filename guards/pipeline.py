"""The guard pipeline around every tool call.

authenticate → authorise (role grant) → rate limit → run (row scope inside the store query)
→ redact PII → delimit untrusted text → cap to a token budget → audit (every outcome, denials too).

The MCP middleware (`GuardMiddleware`) owns the outer steps so that calls the SDK rejects before a
tool runs (unknown tool, arguments failing the schema) are audited as well; `guarded_tool` builds
the function the SDK registers, which runs the inner steps with the principal the middleware set.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from guards.budget import MAX_OUTPUT_TOKENS, fit_to_budget
from guards.errors import BadInput, GuardError, NotFoundInScope, Unauthenticated, Unavailable
from guards.policy import authorize
from guards.principal import Principal
from guards.untrusted import wrap_free_text
from stores.errors import InvalidData, NotFound, StoreError, StoreUnavailable

log = logging.getLogger("kredete.guards")


@dataclass
class CallState:
    """What one tool call accumulates for its audit row."""

    request_id: str
    tool: str
    arguments: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    decision: str = "allowed"
    reason: str | None = None
    rows_returned: int = 0
    redactions: dict[str, int] = field(default_factory=dict)
    injection_flags: int = 0
    truncated: bool = False
    unmasked: bool = False
    resource: str | None = None
    #: The tool name a caller asked for when it is not one of ours (`tool` is then "unknown"). Never stored:
    #: the audit row carries a keyed digest of it (it is caller-controlled text, possibly PII or injection).
    requested_name: str | None = None
    #: More audit metadata (fixed keys and values set by the guards, never caller text).
    extra: dict[str, Any] = field(default_factory=dict)


current_call: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("kredete_call", default=None)


def args_digest(arguments: dict[str, Any], key: bytes) -> str:
    """Keyed digest of the arguments: proves what was asked without storing it (values may be PII)."""
    canonical = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def safe_message(exc: BaseException) -> tuple[str, str]:
    """(decision, message) for any exception, never exposing internals."""
    if isinstance(exc, GuardError):
        return exc.decision, exc.message
    if isinstance(exc, NotFound):
        # Missing or outside the caller's scope (not told apart): a probe of another user's id is a denial.
        return NotFoundInScope.decision, NotFoundInScope.public_message
    if isinstance(exc, InvalidData):
        return "denied", f"invalid arguments: {exc}"
    if isinstance(exc, StoreUnavailable):  # e.g. retrieval.errors.IndexNotBuilt carries its own message
        return "error", getattr(exc, "public_message", Unavailable.public_message)
    if isinstance(exc, StoreError):
        return "error", "the request failed in the data tier"
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        return "denied", f"invalid arguments: {', '.join(fields) or 'input'}"
    return "error", "internal error; the call was logged"


# --------------------------------------------------------------------------------------------
# Building tool functions from pydantic input models
# --------------------------------------------------------------------------------------------

Handler = Callable[[Any, Principal, Any], Awaitable[BaseModel]]
Postprocess = Callable[[dict[str, Any], Principal, Any, CallState], Awaitable[dict[str, Any]]]


def _signature_from_model(model: type[BaseModel], returns: Any) -> inspect.Signature:
    params = []
    for name, info in model.model_fields.items():
        default = inspect.Parameter.empty if info.is_required() else info.get_default(call_default_factory=True)
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[info.annotation, info]
            )
        )
    return inspect.Signature(params, return_annotation=returns)


def guarded_tool(
    *,
    name: str,
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    handler: Handler,
    runtime_getter: Callable[[], Any],
    list_field: str | None = None,
    postprocess: Postprocess | None = None,
    render: Callable[[dict[str, Any]], str] | None = None,
    max_tokens: int = MAX_OUTPUT_TOKENS,
) -> Callable[..., Awaitable[CallToolResult]]:
    """A tool function whose schema is `input_model`'s and whose output is `output_model`.

    `handler(args, principal, runtime)` runs the query with the principal's scope inside it;
    `postprocess` redacts (the runtime supplies it); the pipeline then delimits free text,
    caps the size and renders a short text next to the structured content.
    """

    async def tool(**kwargs: Any) -> CallToolResult:
        state = current_call.get()
        if state is None or state.principal is None:  # only reachable if the middleware is bypassed
            raise ToolError(Unauthenticated.public_message)
        runtime = runtime_getter()
        try:
            args = input_model.model_validate(kwargs)
            result = await handler(args, state.principal, runtime)
            payload = result.model_dump(mode="json")
            if postprocess is not None:
                payload = await postprocess(payload, state.principal, runtime, state)
            payload, state.injection_flags = wrap_free_text(payload)
            # A page cut by the budget continues from its last row shown (the tool's own cursor, if it has one).
            payload, state.truncated = fit_to_budget(payload, list_field, max_tokens=max_tokens,
                                                     cursor_after=getattr(result, "cursor_after", None))
            rows = payload.get(list_field) if list_field else None
            state.rows_returned = len(rows) if isinstance(rows, list) else (1 if payload else 0)
            _check_output(output_model, payload)
        except Exception as exc:
            state.decision, message = safe_message(exc)
            state.reason = message if state.decision != "error" else f"{type(exc).__name__}"
            if state.decision == "error":
                log.error("tool %s failed: %s", name, type(exc).__name__, exc_info=exc)
            raise ToolError(message) from None
        text = render(payload) if render else _default_render(name, payload, list_field)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)

    tool.__name__ = name
    tool.__doc__ = input_model.__doc__
    returns = Annotated[CallToolResult, output_model]
    tool.__signature__ = _signature_from_model(input_model, returns)  # type: ignore[attr-defined]
    tool.__annotations__ = {"return": returns}
    return tool


class OutputSchemaError(RuntimeError):
    """The redacted output no longer fits the published schema: a server bug, never the caller's fault."""


def _check_output(model: type[BaseModel], payload: dict[str, Any]) -> None:
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise OutputSchemaError(f"output does not match {model.__name__}: {fields}") from None


def _default_render(name: str, payload: dict[str, Any], list_field: str | None) -> str:
    if list_field and isinstance(payload.get(list_field), list):
        n = len(payload[list_field])
        more = " (more available: pass next_cursor)" if payload.get("next_cursor") else ""
        note = f" {payload['note']}" if payload.get("truncated") else ""
        return f"{name}: {n} item(s){more}.{note} Structured content holds the data; «data» marks untrusted text."
    return f"{name}: 1 record. Structured content holds the data; «data» marks untrusted text."


def new_call_state(tool: str, arguments: dict[str, Any]) -> CallState:
    return CallState(request_id=uuid.uuid4().hex, tool=tool, arguments=arguments)


def bad_input(message: str) -> BadInput:
    return BadInput(f"invalid arguments: {message}")


__all__ = [
    "CallState",
    "args_digest",
    "authorize",
    "bad_input",
    "current_call",
    "guarded_tool",
    "new_call_state",
    "safe_message",
]
