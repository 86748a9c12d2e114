"""search_knowledge: RAG retrieval over the knowledge index (hybrid BM25 + vector), every retrieval logged as an
observation of a conversation (trace)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent_tools.common import ToolInput
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import ALL_ROLES, KnowledgeScope, knowledge
from guards.tracing import record_retrieval

DocType = Literal["kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document"]
Mode = Literal["hybrid", "knn", "bm25"]
MODES: tuple[str, ...] = ("hybrid", "knn", "bm25")
#: The operator's default retrieval mode (OpenFeature; "hybrid" while unset).
DEFAULT_MODE_FLAG = "search_knowledge.default_mode"
log = logging.getLogger("kredete.tools.knowledge")


class SearchKnowledgeInput(ToolInput):
    """Retrieve passages (help articles and, within your scope, your records) for a question."""

    query: str = Field(min_length=2, max_length=2000)
    k: int = Field(5, ge=1, le=20)
    mode: Mode | None = Field(None, description="Retrieval mode; omitted: the operator's default (hybrid unless "
                                                "the flag search_knowledge.default_mode says otherwise).")
    doc_types: list[DocType] | None = Field(None, max_length=6)
    min_score: float | None = Field(None, ge=0, le=1)
    conversation_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                                        description="Log this retrieval under a conversation.")


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
    #: The mode the search ran in (the one asked for, else the operator's default).
    mode: Mode
    passages: list[PassageOut]


async def search_knowledge(args: SearchKnowledgeInput, ctx: ToolContext[KnowledgeScope]) -> KnowledgeResults:
    scope, mode = ctx.scope, args.mode or default_mode(ctx)
    started = time.perf_counter()
    passages = await ctx.retriever.search(args.query, scope.rows, k=args.k, mode=mode,
                                          min_score=args.min_score, doc_types=list(scope.doc_types))
    query_id = uuid.uuid4().hex
    out = [PassageOut(citation=p.citation, source_id=p.source_id, doc_type=p.doc_type, title=p.title, text=p.text,
                      score=round(float(p.score), 4), highlights=list(p.highlights or [])) for p in passages]
    # Every retrieval is a child observation of the call's trace (the agent's conversation, or its session) and a
    # model prediction with its ranked results: redacted and written in the background, off the call path.
    record_retrieval(args.query, mode=mode, fusion="minmax" if mode == "hybrid" else None, k=args.k,
                     results=[(p.citation, float(p.score), p.doc_type) for p in passages],
                     latency_ms=(time.perf_counter() - started) * 1000, index=f"{ctx.settings.index_prefix}-knowledge",
                     version=f"{ctx.settings.chunk_tokens}/{ctx.settings.chunk_overlap}")
    return KnowledgeResults(query_id=query_id, passages=out, conversation_id=scope.conversation.conversation_id,
                            mode=mode)


def default_mode(ctx: ToolContext[Any]) -> str:
    """The flag's mode for this caller; a variant that names no mode (a definition set by hand) runs hybrid."""
    mode = ctx.flag(DEFAULT_MODE_FLAG)
    if mode not in MODES:
        log.warning("%s serves %r, not a retrieval mode: searching hybrid", DEFAULT_MODE_FLAG, mode)
        return "hybrid"
    return mode


def render_passages(p: dict[str, Any]) -> str:
    rows = p.get("passages", [])
    lines = [f"{len(rows)} passage(s); cite by citation id:"]
    lines += [f"- [{x['citation']}] {x.get('title') or x['doc_type']} (score {x['score']})" for x in rows]
    return "\n".join(lines)


SEARCH_KNOWLEDGE = ToolSpec(
    name="search_knowledge", title="Search knowledge",
    description="Retrieve passages for a question (hybrid BM25 + vector search): help articles and, within your "
                "scope, credit reports, disputes and plans. Cite passages by their citation id.",
    input_model=SearchKnowledgeInput, output_model=KnowledgeResults, handler=search_knowledge,
    grant=ALL_ROLES, scope=knowledge(doc_types="doc_types", conversation="conversation_id"),
    list_field="passages", render=render_passages)
