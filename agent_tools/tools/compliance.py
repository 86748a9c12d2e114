"""Compliance: search the audit trail. Unmasked output only with a stated reason (recorded in the audit row).

Structured filters alone read the authoritative rows from Postgres; a free-text `query` is answered by
the OpenSearch audit-log index (BM25 on reasons, with the same filters), searched under the AuditScope the
guard resolved from a compliance officer's principal (`audit_trail`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from agent_tools.common import Limit, ToolInput, pick
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import audit_trail, check_unmask_reason, unmask_reason_rule
from guards.principal import Role
from stores.scope import AuditScope


class SearchAuditLogsInput(ToolInput):
    """Audit trail search. Unmasked output needs a structured reason (ticket + purpose), and is itself audited."""

    actor_subject: str | None = Field(None, max_length=200)
    action: str | None = Field(None, max_length=100)
    decision: Literal["allowed", "denied", "rate_limited", "error"] | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    limit: Limit = 50
    query: str | None = Field(None, min_length=2, max_length=500,
                              description="Free text over reasons, actions, resources and subjects (best matches "
                                          "first; the audit-log search index trails the database by its sync).")
    unmask_reason: str | None = Field(None, max_length=500,
                                      description=f"Why unmasked values are needed: {unmask_reason_rule()}. "
                                                  "Recorded in this call's audit row.")

    @field_validator("unmask_reason")
    @classmethod
    def _structured_reason(cls, v: str | None) -> str | None:
        return None if v is None else check_unmask_reason(v)


class AuditEntryOut(BaseModel):
    id: int
    occurred_at: datetime
    actor_subject: str
    actor_role: str
    actor_user_id: UUID | None = None
    action: str
    decision: str
    reason: str | None = None
    rows_returned: int
    redactions: dict[str, int] = {}
    latency_ms: int
    request_id: str | None = None
    score: float | None = None
    highlights: list[str] = []


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    unmasked: bool
    source: Literal["postgres", "search_index"] = "postgres"


def _from_index(doc: dict[str, Any]) -> AuditEntryOut:
    return AuditEntryOut(id=int(doc["audit_id"]), occurred_at=doc["occurred_at"], actor_subject=doc["actor_subject"],
                         actor_role=doc["actor_role"], actor_user_id=doc.get("user_id"), action=doc["action"],
                         decision=doc["decision"], reason=doc.get("reason"),
                         rows_returned=int(doc.get("rows_returned", 0)), redactions=doc.get("redactions") or {},
                         latency_ms=int(doc.get("latency_ms", 0)), request_id=doc.get("request_id"),
                         score=round(float(doc["_score"]), 4), highlights=list(doc.get("_highlights") or []))


async def search_audit_logs(args: SearchAuditLogsInput, ctx: ToolContext[AuditScope]) -> AuditPage:
    if args.unmask_reason:
        ctx.call.unmasked = True
        ctx.call.reason = f"unmask: {args.unmask_reason}"
    if args.query:
        # Imported on the first free-text search: the retrieval stack would add ~1 s to every server start.
        from retrieval.scoped_search import search_index
        from stores.search.catalog import AUDIT_LOGS

        filters: dict[str, Any] = {k: v for k, v in (("actor_subject", args.actor_subject), ("action", args.action),
                                                     ("decision", args.decision)) if v is not None}
        when = {k: v.isoformat() for k, v in (("gte", args.date_from), ("lt", args.date_to)) if v is not None}
        if when:
            filters["occurred_at"] = when
        hits = await search_index(ctx.repos.search, AUDIT_LOGS, ctx.scope, text=args.query, filters=filters,
                                  k=args.limit)
        return AuditPage(entries=[_from_index(h) for h in hits], unmasked=bool(args.unmask_reason),
                         source="search_index")
    rows = await ctx.repos.audit.search(ctx.scope.rows, actor_subject=args.actor_subject, action=args.action,
                                        decision=args.decision, date_from=args.date_from, date_to=args.date_to,
                                        limit=args.limit)
    return AuditPage(entries=[AuditEntryOut(**pick(r, AuditEntryOut, {})) for r in rows],
                     unmasked=bool(args.unmask_reason))


SEARCH_AUDIT_LOGS = ToolSpec(
    name="search_audit_logs", title="Search audit logs",
    description="Compliance: search the tamper-evident audit trail by actor, action, decision and time, or by free "
                "text (query). Values are masked unless unmask_reason is given: "
                f"{unmask_reason_rule()}; an unmasked read is itself audited with the reason. Audit text comes "
                "back delimited as «data».",
    input_model=SearchAuditLogsInput, output_model=AuditPage, handler=search_audit_logs,
    grant={Role.COMPLIANCE_OFFICER}, scope=audit_trail(), list_field="entries")
