"""Compliance: search the audit trail. Unmasked output only with a stated reason (recorded in the audit row)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from agent_tools.inputs import SearchAuditLogsInput
from agent_tools.transactions import pick
from guards.pipeline import current_call
from guards.principal import Principal


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


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    unmasked: bool


async def search_audit_logs(args: SearchAuditLogsInput, principal: Principal, rt: Any) -> AuditPage:
    state = current_call.get()
    if args.unmask_reason and state is not None:
        state.unmasked = True
        state.reason = f"unmask: {args.unmask_reason}"
    from stores.scope import RowScope

    rows = await rt.audit_reader.search(RowScope.everyone(), actor_subject=args.actor_subject, action=args.action,
                                        decision=args.decision, date_from=args.date_from, date_to=args.date_to,
                                        limit=args.limit)
    return AuditPage(entries=[AuditEntryOut(**pick(r, AuditEntryOut, {})) for r in rows],
                     unmasked=bool(args.unmask_reason))
