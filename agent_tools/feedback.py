"""Feedback and knowledge tools: the only write (feedback, into the AI log) and RAG retrieval."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from agent_tools.inputs import LogFeedbackInput, SearchKnowledgeInput
from guards.policy import KNOWLEDGE_DOC_TYPES
from guards.principal import Principal
from stores.mongo.documents import GLOBAL_USER_ID


class FeedbackAck(BaseModel):
    feedback_id: str
    conversation_id: str
    accepted: bool


class PassageOut(BaseModel):
    citation: str
    source_id: str
    doc_type: str
    title: str | None = None
    text: str
    score: float
    highlights: list[str] = []


class KnowledgeResults(BaseModel):
    query_id: str
    conversation_id: str
    passages: list[PassageOut]


def _owner(principal: Principal) -> str:
    return str(principal.user_id) if principal.user_id else GLOBAL_USER_ID


async def log_feedback(args: LogFeedbackInput, principal: Principal, rt: Any) -> FeedbackAck:
    feedback_id = await rt.ai_logger.log_feedback(
        args.conversation_id, _owner(principal), score=args.score, label=args.label, comment=args.comment,
        principal_subject=principal.subject)
    return FeedbackAck(feedback_id=str(feedback_id), conversation_id=args.conversation_id, accepted=True)


async def search_knowledge(args: SearchKnowledgeInput, principal: Principal, rt: Any) -> KnowledgeResults:
    allowed = KNOWLEDGE_DOC_TYPES[principal.role]
    doc_types = sorted(allowed & set(args.doc_types)) if args.doc_types else sorted(allowed)
    if not doc_types:
        from guards.errors import Forbidden

        raise Forbidden("none of the requested document types is readable by your role")
    user_types = [t for t in doc_types if t != "kb"]
    scope = await rt.scope_for(principal, None) if user_types else None
    passages = await rt.retriever.search(args.query, scope if scope is not None else _public_scope(),
                                         k=args.k, mode=args.mode, min_score=args.min_score, doc_types=doc_types)
    query_id = uuid.uuid4().hex
    out = [PassageOut(citation=p.citation, source_id=p.source_id, doc_type=p.doc_type, title=p.title, text=p.text,
                      score=round(float(p.score), 4), highlights=list(p.highlights or [])) for p in passages]
    # Every retrieval is an observation of a trace: the agent's conversation, or one of its own.
    conversation_id = args.conversation_id or f"mcp-{query_id}"
    await rt.ai_logger.log_conversation_turn(
        conversation_id, _owner(principal), "system", f"search_knowledge: {args.query}",
        principal_subject=principal.subject, retrieved_ids=[p.citation for p in out],
        metadata={"query_id": query_id, "mode": args.mode, "k": args.k, "observation": "retrieval"})
    return KnowledgeResults(query_id=query_id, passages=out, conversation_id=conversation_id)


def _public_scope():
    from stores.scope import RowScope

    return RowScope.none()


__all__ = ["UUID", "FeedbackAck", "KnowledgeResults", "log_feedback", "search_knowledge"]
