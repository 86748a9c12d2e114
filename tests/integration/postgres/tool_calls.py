"""Calling the MCP tools the way the server does, on a test database: each tool's declaration wrapped by
`guarded_tool` (argument parsing, the declared scope rule resolved from the principal, handler, redaction,
«data» delimiting, token budget, output schema check), with the real `AgentRuntime` wired to the test
database's agent role (no other store is touched)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from agent_tools.registry import BY_NAME
from agent_tools.runtime import AgentRuntime
from config.settings import resolve
from guards.call import current_call, new_call_state
from guards.pipeline import guarded_tool
from guards.principal import Principal, Role
from stores.registry import Stores


def tool_runtime(agent_store, cipher, **settings: Any) -> AgentRuntime:
    """The real runtime class, its repositories on `agent_store` (Postgres only)."""
    s = resolve().model_copy(update=settings)
    return AgentRuntime(s).wire(Stores(postgres=agent_store, settings=s), cipher=cipher)


def principal(role: Role, user: UUID | None = None, subject: str | None = None) -> Principal:
    return Principal(subject=subject or f"{role.value}-test", role=role, user_id=user, token_id="t",
                     expires_at=2**31, issuer="test")


async def call(rt: AgentRuntime, name: str, who: Principal, **arguments: Any):
    """One tool call as the MCP server runs it (after authentication, rate limiting and the grant check); the
    CallToolResult. A refused call raises the ToolError the client would see."""
    fn = guarded_tool(BY_NAME[name], lambda: rt)
    arguments = json.loads(json.dumps(arguments, default=str))  # as a client sends them: JSON (ids as strings)
    state = new_call_state(name, arguments)
    state.principal = who
    token = current_call.set(state)
    try:
        return await fn(**arguments)
    finally:
        current_call.reset(token)
