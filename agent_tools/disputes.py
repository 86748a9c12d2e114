"""Dispute tools: list disputes in scope (cursor-paginated) and read one case.

Every read names the user it is about (shard targeting): customers their own, from the token; staff pass
`user_id`. The exception is a support agent's `list_disputes` without `user_id`: the dispute queue, an
explicitly scatter-gather read (`DisputeRepository.queue`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from agent_tools.credit import target_user
from agent_tools.inputs import GetDisputeInput, ListDisputesInput
from guards.principal import Principal


class DisputeSummary(BaseModel):
    dispute_id: str
    user_id: UUID
    bureau: str
    reason: str
    status: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None


class DisputeList(BaseModel):
    disputes: list[DisputeSummary]
    next_cursor: str | None = None


class StatusChangeOut(BaseModel):
    from_status: str | None = None
    to_status: str
    at: datetime
    note: str | None = None


class LetterOut(BaseModel):
    sent_at: datetime
    channel: str
    body: str


class BureauResponseOut(BaseModel):
    received_at: datetime
    outcome: str


class DisputeDetail(DisputeSummary):
    notes: str | None = None
    status_history: list[StatusChangeOut]
    letters: list[LetterOut]
    bureau_responses: list[BureauResponseOut]


def _summary_fields(d: Any) -> dict[str, Any]:
    data = d.model_dump(mode="python")
    return {"dispute_id": d.id, **{k: data[k] for k in ("user_id", "bureau", "reason", "status", "opened_at",
                                                        "updated_at", "resolved_at")}}


async def list_disputes(args: ListDisputesInput, principal: Principal, rt: Any) -> DisputeList:
    scope = await rt.scope_for(principal, args.user_id)
    uid = args.user_id or principal.user_id
    if uid is None and scope.all_users:
        items, nxt = await rt.disputes.queue(scope, status=args.status, cursor=args.cursor, limit=args.limit)
    else:
        items, nxt = await rt.disputes.list(scope, user_id=uid, status=args.status, cursor=args.cursor,
                                            limit=args.limit)
    return DisputeList(disputes=[DisputeSummary(**_summary_fields(d)) for d in items], next_cursor=nxt)


async def get_dispute(args: GetDisputeInput, principal: Principal, rt: Any) -> DisputeDetail:
    uid = target_user(args, principal)
    scope = await rt.scope_for(principal, uid)
    d = await rt.disputes.get(scope, uid, args.dispute_id)
    data = d.model_dump(mode="python")
    return DisputeDetail(
        **_summary_fields(d), notes=data.get("notes"),
        status_history=[StatusChangeOut(**{k: s.get(k) for k in StatusChangeOut.model_fields})
                        for s in data["status_history"]],
        letters=[LetterOut(**{k: x.get(k) for k in LetterOut.model_fields}) for x in data["letters"]],
        bureau_responses=[BureauResponseOut(**{k: x.get(k) for k in BureauResponseOut.model_fields})
                          for x in data["bureau_responses"]],
    )
