"""Compliance: search the audit trail. Unmasked output only with a stated reason (recorded in the audit row).

Structured filters alone read the authoritative rows from Postgres; a free-text `query` is answered by
the OpenSearch audit-log index (BM25 on reasons, with the same filters), searched under an
AuditScope that only a compliance officer's principal yields (the role grant is checked before).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from agent_tools.inputs import SearchAuditLogsInput as _StructuredInput
from agent_tools.transactions import pick
from guards.pipeline import current_call
from guards.policy import check_unmask_reason, unmask_reason_rule
from guards.principal import Principal


class SearchAuditLogsInput(_StructuredInput):
    """Audit trail search. Unmasked output needs a structured reason (ticket + purpose), and is itself audited."""

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


async def search_audit_logs(args: SearchAuditLogsInput, principal: Principal, rt: Any) -> AuditPage:
    state = current_call.get()
    if args.unmask_reason and state is not None:
        state.unmasked = True
        state.reason = f"unmask: {args.unmask_reason}"
    if args.query:
        from retrieval.scoped_search import search_index
        from stores.scope import AuditScope
        from stores.search.catalog import AUDIT_LOGS

        filters: dict[str, Any] = {k: v for k, v in (("actor_subject", args.actor_subject), ("action", args.action),
                                                     ("decision", args.decision)) if v is not None}
        when = {k: v.isoformat() for k, v in (("gte", args.date_from), ("lt", args.date_to)) if v is not None}
        if when:
            filters["occurred_at"] = when
        hits = await search_index(rt.stores.search, AUDIT_LOGS, AuditScope.of(principal), text=args.query,
                                  filters=filters, k=args.limit)
        return AuditPage(entries=[_from_index(h) for h in hits], unmasked=bool(args.unmask_reason),
                         source="search_index")
    from stores.scope import RowScope

    rows = await rt.audit_reader.search(RowScope.everyone(), actor_subject=args.actor_subject, action=args.action,
                                        decision=args.decision, date_from=args.date_from, date_to=args.date_to,
                                        limit=args.limit)
    return AuditPage(entries=[AuditEntryOut(**pick(r, AuditEntryOut, {})) for r in rows],
                     unmasked=bool(args.unmask_reason))
