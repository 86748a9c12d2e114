"""Credit tools: credit report (latest, version or point in time), score history, action plan.

Each read is about one user (`one_user`): a customer's own, or a user a coach is assigned.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from agent_tools.common import ToolInput, UserId, only
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import UserScope, one_user
from guards.principal import Role

CUSTOMERS_AND_COACHES = {Role.CUSTOMER, Role.CREDIT_COACH}


# --- get_credit_report ------------------------------------------------------------------------------------

class GetCreditReportInput(ToolInput):
    """The latest credit report, or a given version, or the version valid at a point in time."""

    user_id: UserId = None
    version: int | None = Field(None, ge=1, le=10_000)
    as_of: datetime | None = Field(None, description="Return the version that was valid at this time.")

    @model_validator(mode="after")
    def _one_selector(self) -> GetCreditReportInput:
        if self.version is not None and self.as_of is not None:
            raise ValueError("give either version or as_of, not both")
        return self


class AccountOut(BaseModel):
    creditor: str
    account_type: str
    account_number_last4: str | None = None
    status: str
    opened_on: date
    closed_on: date | None = None
    currency: str
    balance_minor: int
    credit_limit_minor: int | None = None
    monthly_payment_minor: int | None = None
    payment_history: list[str] = []
    remarks: str | None = None


class CreditItemOut(BaseModel):
    kind: str
    description: str
    reported_on: date
    amount_minor: int | None = None
    currency: str | None = None


class SubjectOut(BaseModel):
    """Identity block as the bureau holds it; every field is redacted per role (so all are strings)."""

    full_name: str
    date_of_birth: str | None = None
    address: str | None = None
    phone: str | None = None


class CreditReportOut(BaseModel):
    report_id: str
    user_id: UUID
    bureau: str
    country: str
    version: int
    valid_from: datetime
    pulled_at: datetime
    score: int | None = None
    score_model: str
    subject: SubjectOut
    accounts: list[AccountOut]
    items: list[CreditItemOut]
    remarks: str | None = None


async def get_credit_report(args: GetCreditReportInput, ctx: ToolContext[UserScope]) -> CreditReportOut:
    scope, uid = ctx.scope.rows, ctx.scope.user_id
    reports = ctx.repos.credit_reports
    if args.version is not None:
        report = await reports.get_version(scope, uid, args.version)
    elif args.as_of is not None:
        report = await reports.as_of(scope, uid, args.as_of)
    else:
        report = await reports.latest(scope, uid)
    data = report.model_dump(mode="python")
    # Identifiers stay encrypted in the store; the agent never receives them in any form.
    subject = {k: data["subject"].get(k) for k in SubjectOut.model_fields}
    if subject["date_of_birth"] is not None:
        subject["date_of_birth"] = str(subject["date_of_birth"])
    return CreditReportOut(report_id=report.id, subject=SubjectOut(**subject),
                           accounts=[AccountOut.model_validate(a, from_attributes=False)
                                     for a in only(data["accounts"], AccountOut)],
                           items=[CreditItemOut(**x) for x in only(data["items"], CreditItemOut)],
                           **{k: data[k] for k in ("user_id", "bureau", "country", "version", "valid_from",
                                                   "pulled_at", "score", "score_model", "remarks")})


def render_credit_report(p: dict[str, Any]) -> str:
    return (f"Credit report v{p['version']} from {p['bureau']} ({p['country']}), score {p.get('score', '-')}, "
            f"{len(p.get('accounts', []))} account(s), {len(p.get('items', []))} item(s).")


GET_CREDIT_REPORT = ToolSpec(
    name="get_credit_report", title="Get a credit report",
    description="The latest credit report, a given version, or the version valid at a time (as_of). "
                "Identifiers such as SSN/BVN/NIN and account numbers are never returned.",
    input_model=GetCreditReportInput, output_model=CreditReportOut, handler=get_credit_report,
    grant=CUSTOMERS_AND_COACHES, scope=one_user("user_id"), render=render_credit_report)


# --- get_score_history ------------------------------------------------------------------------------------

class GetScoreHistoryInput(ToolInput):
    """Monthly credit score history."""

    user_id: UserId = None
    date_from: datetime | None = None
    date_to: datetime | None = None


class ScorePointOut(BaseModel):
    as_of: datetime
    score: int
    bureau: str
    score_model: str
    source: str


class ScoreHistoryOut(BaseModel):
    user_id: UUID
    points: list[ScorePointOut]


async def get_score_history(args: GetScoreHistoryInput, ctx: ToolContext[UserScope]) -> ScoreHistoryOut:
    points = await ctx.repos.scores.series(ctx.scope.rows, ctx.scope.user_id, args.date_from, args.date_to)
    return ScoreHistoryOut(user_id=ctx.scope.user_id,
                           points=[ScorePointOut(**p.model_dump(include=set(ScorePointOut.model_fields)))
                                   for p in points])


def render_score_history(p: dict[str, Any]) -> str:
    pts = p.get("points", [])
    if not pts:
        return "No score history."
    return f"{len(pts)} score point(s) from {pts[0]['as_of'][:10]} ({pts[0]['score']}) to {pts[-1]['as_of'][:10]} " \
           f"({pts[-1]['score']})."


GET_SCORE_HISTORY = ToolSpec(
    name="get_score_history", title="Credit score history", description="Monthly credit score points, oldest first.",
    input_model=GetScoreHistoryInput, output_model=ScoreHistoryOut, handler=get_score_history,
    grant=CUSTOMERS_AND_COACHES, scope=one_user("user_id"), list_field="points", render=render_score_history)


# --- get_action_plan --------------------------------------------------------------------------------------

class GetActionPlanInput(ToolInput):
    """The current credit-building action plan."""

    user_id: UserId = None


class ActionStepOut(BaseModel):
    title: str
    detail: str | None = None
    factor: str
    due_on: date | None = None
    status: str


class ActionPlanOut(BaseModel):
    plan_id: str
    user_id: UUID
    version: int
    target_score: int | None = None
    horizon_months: int
    summary: str | None = None
    steps: list[ActionStepOut]


async def get_action_plan(args: GetActionPlanInput, ctx: ToolContext[UserScope]) -> ActionPlanOut:
    plan = await ctx.repos.plans.latest(ctx.scope.rows, ctx.scope.user_id)
    data = plan.model_dump(mode="python")
    return ActionPlanOut(plan_id=plan.id, steps=[ActionStepOut(**s) for s in only(data["steps"], ActionStepOut)],
                         **{k: data[k] for k in ("user_id", "version", "target_score", "horizon_months", "summary")})


GET_ACTION_PLAN = ToolSpec(
    name="get_action_plan", title="Credit action plan", description="The current credit-building plan and its steps.",
    input_model=GetActionPlanInput, output_model=ActionPlanOut, handler=get_action_plan,
    grant=CUSTOMERS_AND_COACHES, scope=one_user("user_id"))
