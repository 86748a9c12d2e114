"""The guard pipeline around every tool call.

authenticate → authorise (role grant) → rate limit → switched on (feature flag) → run (row scope inside the
store query) → redact PII → delimit untrusted text → cap to a token budget → audit (every outcome, denials too).

The MCP middleware (`GuardMiddleware`) owns the outer steps so that calls the SDK rejects before a
tool runs (unknown tool, arguments failing the schema) are audited as well; `guarded_tool` builds
the function the SDK registers from a tool's declaration, which runs the inner steps (scope rule resolved
from the principal, handler, redaction, delimiting, budget) with the principal the middleware set.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from guards.budget import MAX_OUTPUT_TOKENS, fit_to_budget
from guards.call import CallState, args_digest, current_call, new_call_state
from guards.errors import BadInput, GuardError, NotFoundInScope, Unauthenticated, Unavailable
from guards.gate import Gate, ToolDeclaration
from guards.untrusted import wrap_free_text
from stores.errors import InvalidData, NotFound, StoreError, StoreUnavailable

log = logging.getLogger("kredete.guards")


class ToolHost(Protocol):
    """What runs tools in a process: its gate, and the typed context a handler gets for one call."""

    gate: Gate

    def context(self, state: CallState, scope: Any) -> Any: ...


def parse_arguments(model: type[BaseModel], arguments: dict[str, Any]) -> BaseModel:
    """The tool's input model from the call's arguments as the client sent them (ValidationError if not).

    Validated as the JSON they arrived as: with a strict model, a string is never coerced into a number nor a
    boolean into an integer, while dates and ids keep arriving as the ISO 8601 and UUID strings JSON carries.
    """
    return model.model_validate_json(json.dumps(arguments))


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
# Building tool functions from their declarations
# --------------------------------------------------------------------------------------------

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


def guarded_tool(spec: ToolDeclaration, host: Callable[[], ToolHost], *,
                 max_tokens: int = MAX_OUTPUT_TOKENS) -> Callable[..., Awaitable[CallToolResult]]:
    """The function the SDK registers for a declared tool: its schema is the input model's.

    Inside the middleware's outer steps it refuses a tool an operator switched off (its feature flag), parses
    the arguments, resolves the declared scope rule from the
    principal, runs `handler(args, context)` (the scope inside the store query), redacts every string,
    delimits free text, caps the size to the token budget and renders a short text next to the structured
    content. Any failure becomes a safe message (and the call's audit decision).
    """
    name, input_model, output_model, list_field = spec.name, spec.input_model, spec.output_model, spec.list_field

    async def tool(**_sdk_arguments: Any) -> CallToolResult:
        state = current_call.get()
        if state is None or state.principal is None:  # only reachable if the middleware is bypassed
            raise ToolError(Unauthenticated.public_message)
        h = host()
        early = None
        try:
            h.gate.require_enabled(name, state.principal)
            parsed = state.parsed_arguments  # validated by the middleware from these same arguments
            args = parsed if type(parsed) is input_model else parse_arguments(input_model, state.arguments)
            scope = await spec.scope.resolve(state.principal, args, h.gate.access)
            # The known PII of the users named already (the caller, a user_id argument) is looked up while the
            # handler runs; redaction waits for it (and asks for any other user the output names).
            early = h.gate.prefetch_pii(state, (getattr(args, "user_id", None),))
            result = await spec.handler(args, h.context(state, scope))
            payload = await h.gate.redact(result.model_dump(mode="json"), state, early=early)
            early = None
            payload, state.injection_flags = wrap_free_text(payload)
            # A page cut by the budget continues from its last row shown (the tool's own cursor, if it has one).
            payload, state.truncated = fit_to_budget(payload, list_field, max_tokens=max_tokens,
                                                     cursor_after=getattr(result, "cursor_after", None))
            rows = payload.get(list_field) if list_field else None
            state.rows_returned = len(rows) if isinstance(rows, list) else (1 if payload else 0)
            _check_output(output_model, payload)
        except Exception as exc:
            if early is not None:
                early.cancel()
            state.decision, message = safe_message(exc)
            state.reason = message if state.decision != "error" else f"{type(exc).__name__}"
            if state.decision == "error":
                log.error("tool %s failed: %s", name, type(exc).__name__, exc_info=exc)
            raise ToolError(message) from None
        text = spec.render(payload) if spec.render else _default_render(name, payload, list_field)
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


def bad_input(message: str) -> BadInput:
    return BadInput(f"invalid arguments: {message}")


__all__ = [
    "CallState",
    "ToolHost",
    "args_digest",
    "bad_input",
    "current_call",
    "guarded_tool",
    "new_call_state",
    "parse_arguments",
    "safe_message",
]
