"""The guards of one server process, built once: authentication, rate limits, grants, scope resolution, output
redaction and audit. `GuardMiddleware` runs the outer steps with it, `guarded_tool` the inner ones.

The gate knows the tools only through what they declare (`ToolDeclaration`): name, input model, whether they
write, their grant and their scope rule. The grant table is derived from those declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from guards.access import AccessSources, Grants, ScopeRule, authorize
from guards.audit import AuditWriter
from guards.bearer import Authenticator
from guards.call import CallState
from guards.errors import Disabled, Unavailable
from guards.output_redaction import OutputRedactor, Prefetch
from guards.principal import Principal, Role
from guards.ratelimit import RateLimiter


class ToolDeclaration(Protocol):
    """What the guards read of a tool's declaration (`agent_tools.spec.ToolSpec`)."""

    name: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    read_only: bool
    grant: frozenset[Role]
    scope: ScopeRule[Any]
    list_field: str | None
    render: Callable[[dict[str, Any]], str] | None
    handler: Callable[[Any, Any], Awaitable[BaseModel]]
    enabled_by: str | None


class Switches(Protocol):
    """Feature flags as the guards read them: is the boolean flag `key` on for this principal."""

    def enabled(self, key: str, principal: Principal) -> bool: ...


def grants_of(tools: Iterable[ToolDeclaration]) -> dict[str, frozenset[Role]]:
    """The grant table: tool name -> roles, straight from the declarations."""
    return {t.name: frozenset(t.grant) for t in tools}


class Gate:
    def __init__(self, tools: Iterable[ToolDeclaration], *, authenticator: Authenticator,
                 rate_limiter: RateLimiter | None, audit: AuditWriter, redactor: OutputRedactor,
                 access: AccessSources, switches: Switches | None = None) -> None:
        self.tools = {t.name: t for t in tools}
        self.tool_names = frozenset(self.tools)
        self.input_models = {n: t.input_model for n, t in self.tools.items()}
        #: Tools that write (their audit row is written before the write: no write without it).
        self.write_tools = frozenset(n for n, t in self.tools.items() if not t.read_only)
        self.grants: Grants = grants_of(self.tools.values())
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.audit_writer = audit
        self.redactor = redactor
        self.access = access
        #: Tools an operator can switch off: tool name -> its boolean feature flag.
        self.switched = {n: t.enabled_by for n, t in self.tools.items() if t.enabled_by}
        self.switches = switches
        #: `guards.tracing.TraceRecorder` when AI traces are on (set by the runtime); the middleware hands it
        #: every call.
        self.tracer: Any = None
        #: Set by the runtime (`stores.postgres.pool.calls` and `call_sessions`): the middleware runs each known
        #: tool's call in `session_scope(tool)` and records the PostgreSQL sessions it used (`call_sessions()`:
        #: server, backend pid, checkout and release times) in its audit row, which attributes the servers'
        #: slow-statement log lines to the call (`kredete ops slow-queries --log`).
        self.session_scope: Callable[[str], AbstractAsyncContextManager[None]] | None = None
        self.call_sessions: Callable[[], list[dict[str, Any]]] | None = None

    async def authenticate(self, ctx: Any) -> Principal:
        return await self.authenticator.authenticate(ctx)

    async def rate_limit(self, principal: Principal, label: str) -> Literal["counted", "exempt"]:
        """"counted" or "exempt" (KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS); raises RateLimited past the limit."""
        if self.rate_limiter is None:
            raise Unavailable()
        return await self.rate_limiter.check(principal, label)

    def authorize(self, principal: Principal, tool: str) -> None:
        authorize(principal, tool, self.grants)

    def require_enabled(self, tool: str, principal: Principal) -> None:
        """Raise Disabled when the tool's feature flag is off for this principal. A switchable tool in a gate
        without flags is off: nothing could tell whether an operator switched it off."""
        key = self.switched.get(tool)
        if key is not None and (self.switches is None or not self.switches.enabled(key, principal)):
            raise Disabled(f"{tool} is switched off by the operator (feature flag {key}); try again later")

    async def audit(self, state: CallState) -> bool:
        """One append-only audit row per call; False when it could not be written."""
        return await self.audit_writer.write(state)

    def prefetch_pii(self, state: CallState, user_ids: Iterable[Any]) -> Prefetch | None:
        return self.redactor.prefetch(state, user_ids)

    async def redact(self, payload: dict[str, Any], state: CallState, *,
                     early: Prefetch | None = None) -> dict[str, Any]:
        if early is None:
            return await self.redactor.redact(payload, state)
        return await self.redactor.redact(payload, state, early=early)
