"""log_feedback: the only write tool (a rating of an answer, stored redacted in the AI feedback log)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agent_tools.common import ToolInput
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import ALL_ROLES, ConversationScope, own_conversation


class LogFeedbackInput(ToolInput):
    """Record feedback on an answer (stored redacted in the AI feedback log)."""

    conversation_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    score: int = Field(ge=-1, le=5, description="-1 (harmful) .. 5 (excellent).")
    label: Literal["helpful", "not_helpful", "incorrect", "unsafe", "other"] = "other"
    comment: str | None = Field(None, max_length=2000)
    observation_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                                       description="Score one observation of the conversation (a turn, a tool "
                                                   "call: `_meta[\"kredete/observation_id\"]` of its result).")


class FeedbackAck(BaseModel):
    feedback_id: str
    conversation_id: str
    accepted: bool


async def log_feedback(args: LogFeedbackInput, ctx: ToolContext[ConversationScope]) -> FeedbackAck:
    conversation = ctx.scope
    feedback_id = await ctx.ai_log.log_feedback(
        conversation.conversation_id, conversation.user_id, score=args.score, label=args.label, comment=args.comment,
        principal_subject=ctx.principal.subject, observation_id=args.observation_id)
    return FeedbackAck(feedback_id=str(feedback_id), conversation_id=conversation.conversation_id, accepted=True)


LOG_FEEDBACK = ToolSpec(
    name="log_feedback", title="Log feedback",
    description="Record a rating of an answer in a conversation (stored redacted). The only write tool.",
    input_model=LogFeedbackInput, output_model=FeedbackAck, handler=log_feedback,
    grant=ALL_ROLES, scope=own_conversation("conversation_id"), read_only=False)
