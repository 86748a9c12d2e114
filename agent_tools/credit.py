"""Credit tools: credit report (latest, version or point in time), score history, action plan."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from agent_tools.inputs import GetActionPlanInput, GetCreditReportInput, GetScoreHistoryInput
from guards.principal import Principal


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


class ScorePointOut(BaseModel):
    as_of: datetime
    score: int
    bureau: str
    score_model: str
    source: str


class ScoreHistoryOut(BaseModel):
    user_id: UUID
    points: list[ScorePointOut]


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


def target_user(args: Any, principal: Principal) -> UUID:
    """The user a read is about: a customer's own (from the token), or the `user_id` staff must pass."""
    from guards.errors import BadInput

    uid = args.user_id or principal.user_id
    if uid is None:
        raise BadInput("invalid arguments: user_id is required for staff roles")
    return uid


async def get_credit_report(args: GetCreditReportInput, principal: Principal, rt: Any) -> CreditReportOut:
    uid = target_user(args, principal)
    scope = await rt.scope_for(principal, uid)
    if args.version is not None:
        report = await rt.credit_reports.get_version(scope, uid, args.version)
    elif args.as_of is not None:
        report = await rt.credit_reports.as_of(scope, uid, args.as_of)
    else:
        report = await rt.credit_reports.latest(scope, uid)
    data = report.model_dump(mode="python")
    # Identifiers stay encrypted in the store; the agent never receives them in any form.
    subject = {k: data["subject"].get(k) for k in SubjectOut.model_fields}
    if subject["date_of_birth"] is not None:
        subject["date_of_birth"] = str(subject["date_of_birth"])
    return CreditReportOut(report_id=report.id, subject=SubjectOut(**subject),
                           accounts=[AccountOut.model_validate(a, from_attributes=False)
                                     for a in _only(data["accounts"], AccountOut)],
                           items=[CreditItemOut(**x) for x in _only(data["items"], CreditItemOut)],
                           **{k: data[k] for k in ("user_id", "bureau", "country", "version", "valid_from",
                                                   "pulled_at", "score", "score_model", "remarks")})


def _only(rows: list[dict[str, Any]], model: type[BaseModel]) -> list[dict[str, Any]]:
    keys = model.model_fields.keys()
    return [{k: r.get(k) for k in keys if k in r} for r in rows]


async def get_score_history(args: GetScoreHistoryInput, principal: Principal, rt: Any) -> ScoreHistoryOut:
    uid = target_user(args, principal)
    scope = await rt.scope_for(principal, uid)
    points = await rt.scores.series(scope, uid, args.date_from, args.date_to)
    return ScoreHistoryOut(user_id=uid, points=[ScorePointOut(**p.model_dump(include=set(ScorePointOut.model_fields)))
                                                for p in points])


async def get_action_plan(args: GetActionPlanInput, principal: Principal, rt: Any) -> ActionPlanOut:
    uid = target_user(args, principal)
    scope = await rt.scope_for(principal, uid)
    plan = await rt.plans.latest(scope, uid)
    data = plan.model_dump(mode="python")
    return ActionPlanOut(plan_id=plan.id, steps=[ActionStepOut(**s) for s in _only(data["steps"], ActionStepOut)],
                         **{k: data[k] for k in ("user_id", "version", "target_score", "horizon_months", "summary")})
