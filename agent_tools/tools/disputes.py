"""Dispute tools: list disputes in scope (cursor-paginated) and read one case.

Every read names the user it is about (shard targeting): customers their own, from the token; staff pass
`user_id`. The exception is a support agent's `list_disputes` without `user_id`: the dispute queue, an
explicitly scatter-gather read (`DisputeRepository.queue`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from agent_tools.common import Cursor, Limit, ToolInput, UserId, more
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import UserScope, one_user, own_rows
from guards.principal import Role
from stores.scope import RowScope

CUSTOMERS_AND_SUPPORT = {Role.CUSTOMER, Role.SUPPORT_AGENT}


class DisputeSummary(BaseModel):
    dispute_id: str
    user_id: UUID
    bureau: str
    reason: str
    status: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None


def _summary_fields(d: Any) -> dict[str, Any]:
    data = d.model_dump(mode="python")
    return {"dispute_id": d.id, **{k: data[k] for k in ("user_id", "bureau", "reason", "status", "opened_at",
                                                        "updated_at", "resolved_at")}}


# --- list_disputes ----------------------------------------------------------------------------------------

class ListDisputesInput(ToolInput):
    """Credit disputes in your scope, newest first (support staff without user_id: the queue of all users)."""

    user_id: UserId = None
    status: Literal["opened", "submitted_to_bureau", "under_review", "resolved", "rejected"] | None = None
    cursor: Cursor | None = None
    limit: Limit = 20


class DisputeList(BaseModel):
    disputes: list[DisputeSummary]
    next_cursor: str | None = None


async def list_disputes(args: ListDisputesInput, ctx: ToolContext[RowScope]) -> DisputeList:
    scope = ctx.scope
    if scope.all_users:  # the support queue: every user's disputes
        items, nxt = await ctx.repos.disputes.queue(scope, status=args.status, cursor=args.cursor, limit=args.limit)
    else:
        items, nxt = await ctx.repos.disputes.list(scope, user_id=scope.single_user(), status=args.status,
                                                   cursor=args.cursor, limit=args.limit)
    return DisputeList(disputes=[DisputeSummary(**_summary_fields(d)) for d in items], next_cursor=nxt)


def render_disputes(p: dict[str, Any]) -> str:
    rows = p.get("disputes", [])
    lines = [f"{len(rows)} dispute(s){more(p)}:"]
    lines += [f"- {d['dispute_id']} {d['status']} ({d['reason']}, {d['bureau']})" for d in rows[:10]]
    return "\n".join(lines)


LIST_DISPUTES = ToolSpec(
    name="list_disputes", title="List disputes",
    description="Credit disputes in your scope, newest first, with a cursor.",
    input_model=ListDisputesInput, output_model=DisputeList, handler=list_disputes,
    grant=CUSTOMERS_AND_SUPPORT, scope=own_rows(narrow_to="user_id"), list_field="disputes", render=render_disputes)


# --- get_dispute ------------------------------------------------------------------------------------------

class GetDisputeInput(ToolInput):
    """One dispute case with its letters, bureau responses and history."""

    dispute_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    user_id: UUID | None = Field(None, description="Staff: required, the user the dispute belongs to. "
                                                   "Customers: omit it.")


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


async def get_dispute(args: GetDisputeInput, ctx: ToolContext[UserScope]) -> DisputeDetail:
    d = await ctx.repos.disputes.get(ctx.scope.rows, ctx.scope.user_id, args.dispute_id)
    data = d.model_dump(mode="python")
    return DisputeDetail(
        **_summary_fields(d), notes=data.get("notes"),
        status_history=[StatusChangeOut(**{k: s.get(k) for k in StatusChangeOut.model_fields})
                        for s in data["status_history"]],
        letters=[LetterOut(**{k: x.get(k) for k in LetterOut.model_fields}) for x in data["letters"]],
        bureau_responses=[BureauResponseOut(**{k: x.get(k) for k in BureauResponseOut.model_fields})
                          for x in data["bureau_responses"]],
    )


GET_DISPUTE = ToolSpec(
    name="get_dispute", title="Get a dispute",
    description="One dispute case: letters, bureau responses and status history.",
    input_model=GetDisputeInput, output_model=DisputeDetail, handler=get_dispute,
    grant=CUSTOMERS_AND_SUPPORT, scope=one_user("user_id"))
