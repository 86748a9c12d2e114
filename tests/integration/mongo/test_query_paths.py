"""Sharding readiness: every read a tool makes carries `user_id` (and the scope) inside the filter."""

from __future__ import annotations

from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from stores.mongo.credit import (
    ActionPlanRepository,
    BureauResponseRepository,
    CreditFactorRepository,
    CreditReportRepository,
    DisputeRepository,
    ScoreHistoryRepository,
)
from stores.mongo.documents import ActionPlan
from stores.scope import RowScope
from tests.integration.mongo.factories import dispute, report, uid

USER_COLLECTIONS = {"credit_reports", "score_history", "dispute_cases", "action_plans", "bureau_responses",
                    "credit_factors"}


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.finds: list[tuple[str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds.append((event.command["find"], event.command.get("filter", {})))

    def succeeded(self, event) -> None: ...

    def failed(self, event) -> None: ...


def _user_clauses(flt: dict) -> list:
    """`user_id` conditions at the top level or inside a top-level `$and`."""
    found = [flt["user_id"]] if "user_id" in flt else []
    for part in flt.get("$and", []):
        found += _user_clauses(part)
    return found


async def test_every_tool_read_filters_on_user_id(mongo_url, db, encryption):
    user = uid()
    d = await DisputeRepository(db, encryption=encryption).create(dispute(user))
    await CreditReportRepository(db, encryption=encryption).add_version(report(user))
    await ActionPlanRepository(db).add_version(ActionPlan(user_id=user))

    rec = Recorder()
    client = AsyncIOMotorClient(mongo_url, event_listeners=[rec], tz_aware=True, retryWrites=False)
    try:
        mdb = client[db.name]
        scope = RowScope.users(user)
        reports = CreditReportRepository(mdb, encryption=encryption)
        await reports.latest(scope, user)
        await reports.get_version(scope, user, 1)
        await reports.as_of(scope, user, datetime.now(UTC))
        await reports.list_versions(scope, user)
        await ScoreHistoryRepository(mdb).series(scope, user)
        disputes = DisputeRepository(mdb)
        await disputes.list(scope)
        await disputes.list(scope, user_id=user, status="opened")
        await disputes.get(scope, d.id)
        await ActionPlanRepository(mdb).latest(scope, user)
        await BureauResponseRepository(mdb).for_dispute(scope, user, d.id)
        await CreditFactorRepository(mdb).for_user(scope, user)
        # staff scope naming a user: still targeted
        await reports.latest(RowScope.everyone(), user)
    finally:
        client.close()
    user_reads = [(c, f) for c, f in rec.finds if c in USER_COLLECTIONS]
    assert len(user_reads) >= 12
    for coll, flt in user_reads:
        clauses = _user_clauses(flt)
        assert clauses, f"{coll} read without user_id: {flt}"
        assert all(isinstance(c, dict) and set(c) <= {"$eq", "$in"} for c in clauses), flt
