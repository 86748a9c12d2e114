"""Calling the MCP tools the way the server does, on a test database: the registry's specs wrapped by
`guarded_tool` (validation, handler, redaction, «data» delimiting, token budget, output schema check), with the
real `AgentRuntime` whose repositories run on the test database's agent role."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agent_tools.registry import TOOLS
from agent_tools.runtime import AgentRuntime
from config.settings import resolve
from guards.pipeline import current_call, guarded_tool, new_call_state
from guards.principal import Principal, Role
from stores.postgres import AnalyticsRepository, TransactionRepository, UserRepository

SPECS = {s.name: s for s in TOOLS}


def tool_runtime(agent_store, cipher, **settings: Any) -> AgentRuntime:
    """The real runtime class, its Postgres repositories on `agent_store` (no other store is touched)."""
    rt = AgentRuntime(resolve().model_copy(update=settings))
    rt.transactions = TransactionRepository(agent_store)
    rt.analytics = AnalyticsRepository(agent_store)
    rt.users = UserRepository(agent_store, cipher=cipher)
    rt.coaches = UserRepository(agent_store)
    return rt


def principal(role: Role, user: UUID | None = None, subject: str | None = None) -> Principal:
    return Principal(subject=subject or f"{role.value}-test", role=role, user_id=user, token_id="t",
                     expires_at=2**31, issuer="test")


async def call(rt: AgentRuntime, name: str, who: Principal, **arguments: Any):
    """One tool call as the MCP server runs it (after authentication and rate limiting); the CallToolResult.
    A refused call raises the ToolError the client would see."""
    spec = SPECS[name]
    fn = guarded_tool(name=spec.name, input_model=spec.input_model, output_model=spec.output_model,
                      handler=spec.handler, runtime_getter=lambda: rt, list_field=spec.list_field,
                      postprocess=spec.postprocess, render=spec.render)
    state = new_call_state(name, arguments)
    state.principal = who
    token = current_call.set(state)
    try:
        return await fn(**arguments)
    finally:
        current_call.reset(token)
