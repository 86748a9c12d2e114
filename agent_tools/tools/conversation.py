"""log_turn: the client logs a conversation turn (the user's message or the assistant's answer) into its trace,
so a trace reads as the conversation: turns, and under each turn the calls made to answer it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_tools.common import ToolInput
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import ALL_ROLES, ConversationScope, own_conversation
from guards.tracing import record_turn

_ID = r"^[A-Za-z0-9_\-]+$"


class LogTurnInput(ToolInput):
    """Log one turn of your conversation (stored redacted). Calls that answer a turn can name it as their parent
    with `_meta["kredete/parent_id"]`; feedback can score it by its observation id (the trace id is
    `_meta["kredete/trace_id"]` of the result)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={
        "examples": [{"role": "user", "content": "How long does a transfer to Ghana take?"}]})

    conversation_id: str | None = Field(None, min_length=1, max_length=64, pattern=_ID,
                                        description="Your conversation (default: the trace of this MCP session).")
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=20_000)
    parent_id: str | None = Field(None, max_length=64, pattern=_ID,
                                  description="The turn this one answers (an assistant turn under the user's).")


class TurnAck(BaseModel):
    conversation_id: str | None
    observation_id: str | None
    accepted: bool


async def log_turn(args: LogTurnInput, ctx: ToolContext[ConversationScope]) -> TurnAck:
    observation_id = record_turn(args.role, args.content, parent_id=args.parent_id)
    return TurnAck(conversation_id=args.conversation_id, observation_id=observation_id,
                   accepted=observation_id is not None)


LOG_TURN = ToolSpec(
    name="log_turn", title="Log a conversation turn",
    description="Record a turn of your conversation (your user's message or your answer), stored redacted in its "
                "trace. A write of the AI log only.",
    input_model=LogTurnInput, output_model=TurnAck, handler=log_turn,
    grant=ALL_ROLES, scope=own_conversation("conversation_id"), read_only=False)
