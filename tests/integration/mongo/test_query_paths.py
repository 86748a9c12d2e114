"""Sharding readiness: every read a tool makes carries `user_id` (and the scope) inside the filter.

Filters are captured by a pymongo CommandListener on a real connection, for the repositories directly and
for every role's path through the tool handlers (with the tools' declared scope rules, resolved as the guard does).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from pymongo import AsyncMongoClient, monitoring

from agent_tools.context import ToolContext
from agent_tools.registry import BY_NAME
from agent_tools.repositories import Repositories
from agent_tools.tools import credit as i_credit
from agent_tools.tools import disputes as i_disputes
from config.settings import resolve
from guards.access import AccessSources
from guards.call import new_call_state
from guards.errors import BadInput
from guards.principal import Principal, Role
from stores.errors import InvalidData, NotFound
from stores.mongo.credit import (
    QUEUE_COMMENT,
    ActionPlanRepository,
    BureauResponseRepository,
    CreditFactorRepository,
    CreditReportRepository,
    DisputeRepository,
    ScoreHistoryRepository,
)
from stores.mongo.documents import ActionPlan
from stores.registry import Stores
from stores.scope import RowScope
from tests.integration.mongo.factories import dispute, report, uid

USER_COLLECTIONS = {"credit_reports", "score_history", "dispute_cases", "action_plans", "bureau_responses",
                    "credit_factors"}


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.finds: list[tuple[str, dict, str | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            cmd = event.command
            self.finds.append((cmd["find"], cmd.get("filter", {}), cmd.get("comment")))

    def succeeded(self, event) -> None: ...

    def failed(self, event) -> None: ...


def _user_clauses(flt: dict) -> list:
    """`user_id` conditions at the top level or inside a top-level `$and`."""
    found = [flt["user_id"]] if "user_id" in flt else []
    for part in flt.get("$and", []):
        found += _user_clauses(part)
    return found


def _assert_targeted(finds: list[tuple[str, dict, str | None]], what: str) -> None:
    user_reads = [(c, f) for c, f, _ in finds if c in USER_COLLECTIONS]
    assert user_reads, f"{what}: no read recorded"
    for coll, flt in user_reads:
        clauses = _user_clauses(flt)
        assert clauses, f"{what}: {coll} read without user_id: {flt}"
        assert all(isinstance(c, dict) and set(c) <= {"$eq", "$in"} for c in clauses), (what, flt)


@pytest.fixture
async def recorded(mongo_url, db):
    rec = Recorder()
    client = AsyncMongoClient(mongo_url, event_listeners=[rec], tz_aware=True, retryWrites=False)
    yield rec, client[db.name]
    await client.close()


async def test_every_repository_read_filters_on_user_id(recorded, db, encryption):
    rec, mdb = recorded
    user = uid()
    d = await DisputeRepository(db, encryption=encryption).create(dispute(user))
    await CreditReportRepository(db, encryption=encryption).add_version(report(user))
    await ActionPlanRepository(db).add_version(ActionPlan(user_id=user))

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
    await disputes.get(scope, user, d.id)
    await ActionPlanRepository(mdb).latest(scope, user)
    await BureauResponseRepository(mdb).for_dispute(scope, user, d.id)
    await CreditFactorRepository(mdb).for_user(scope, user)
    # staff scope naming a user: still targeted
    everyone = RowScope.everyone()
    await reports.latest(everyone, user)
    await disputes.get(everyone, user, d.id)
    await disputes.list(everyone, user_id=user)
    assert len(rec.finds) >= 14
    _assert_targeted(rec.finds, "repositories")


async def test_untargeted_dispute_reads_are_refused_or_explicitly_the_queue(recorded, db, encryption):
    rec, mdb = recorded
    owner, other = uid(), uid()
    d = await DisputeRepository(db, encryption=encryption).create(dispute(owner))
    repo = DisputeRepository(mdb)
    with pytest.raises(InvalidData):
        await repo.list(RowScope.everyone())  # no silent scatter-gather
    with pytest.raises(InvalidData):
        await repo.queue(RowScope.users(owner))  # the queue is for all-users scopes only
    with pytest.raises(NotFound):
        await repo.get(RowScope.everyone(), other, d.id)  # the dispute must belong to the named user
    rec.finds.clear()
    items, _ = await repo.queue(RowScope.everyone(), status="opened", limit=100)
    assert items and all(x.status.value == "opened" for x in items)
    ((coll, flt, comment),) = rec.finds
    assert coll == "dispute_cases" and comment == QUEUE_COMMENT and "user_id" not in flt


class Assignments:
    """Coach assignments as the Postgres `coach_assignments` table would answer (not a Mongo stand-in)."""

    def __init__(self, assigned: list[str]) -> None:
        self.assigned = [UUID(a) for a in assigned]

    async def users_assigned_to(self, subject: str) -> list[UUID]:
        return self.assigned


class Tools:
    """The credit and dispute tools as the server runs them: the declared scope rule resolved from the principal
    (coach assignments as above), then the handler with the repositories on the recorded connection."""

    def __init__(self, mdb, assigned: list[str]) -> None:
        self.repos = Repositories(Stores(mongo=mdb))
        self.access = AccessSources(assignments=Assignments(assigned), min_cell_size=5)

    async def __call__(self, name: str, principal: Principal, args):
        spec = BY_NAME[name]
        scope = await spec.scope.resolve(principal, args, self.access)
        ctx = ToolContext(principal=principal, scope=scope, repos=self.repos, settings=resolve(),
                          call=new_call_state(name, {}))
        return await spec.handler(args, ctx)


def _principal(role: Role, user: str | None = None) -> Principal:
    return Principal(subject=f"{role.value}-1", role=role, user_id=UUID(user) if user else None, token_id="t",
                     expires_at=2**31, issuer="test")


async def test_every_roles_tool_paths_filter_on_user_id(recorded, db, encryption):
    rec, mdb = recorded
    user = uid()
    d = await DisputeRepository(db, encryption=encryption).create(dispute(user))
    await CreditReportRepository(db, encryption=encryption).add_version(report(user))
    await ActionPlanRepository(db).add_version(ActionPlan(user_id=user))
    tool = Tools(mdb, assigned=[user, uid()])
    customer, agent, coach = (_principal(Role.CUSTOMER, user), _principal(Role.SUPPORT_AGENT),
                              _principal(Role.CREDIT_COACH))
    now = datetime.now(UTC)
    user_id = UUID(user)
    paths = [
        (customer, "list_disputes", i_disputes.ListDisputesInput()),
        (customer, "list_disputes", i_disputes.ListDisputesInput(status="opened")),
        (customer, "get_dispute", i_disputes.GetDisputeInput(dispute_id=d.id)),
        (customer, "get_credit_report", i_credit.GetCreditReportInput()),
        (customer, "get_credit_report", i_credit.GetCreditReportInput(version=1)),
        (customer, "get_credit_report", i_credit.GetCreditReportInput(as_of=now)),
        (customer, "get_score_history", i_credit.GetScoreHistoryInput()),
        (customer, "get_action_plan", i_credit.GetActionPlanInput()),
        (agent, "list_disputes", i_disputes.ListDisputesInput(user_id=user_id)),
        (agent, "list_disputes", i_disputes.ListDisputesInput(user_id=user_id, status="opened")),
        (agent, "get_dispute", i_disputes.GetDisputeInput(dispute_id=d.id, user_id=user_id)),
        (coach, "get_credit_report", i_credit.GetCreditReportInput(user_id=user_id)),
        (coach, "get_score_history", i_credit.GetScoreHistoryInput(user_id=user_id)),
        (coach, "get_action_plan", i_credit.GetActionPlanInput(user_id=user_id)),
    ]
    for principal, name, args in paths:
        rec.finds.clear()
        out = await tool(name, principal, args)
        what = f"{principal.role.value}/{name}({args.model_dump(exclude_none=True)})"
        _assert_targeted(rec.finds, what)
        body = out.model_dump()
        if "disputes" in body:
            assert [x["dispute_id"] for x in body["disputes"]] == [d.id], what
        elif "points" not in body:
            assert str(body["user_id"]) == user, what

    # Staff must name the dispute's user; naming another user finds nothing.
    with pytest.raises(BadInput):
        await tool("get_dispute", agent, i_disputes.GetDisputeInput(dispute_id=d.id))
    with pytest.raises(NotFound):
        await tool("get_dispute", agent, i_disputes.GetDisputeInput(dispute_id=d.id, user_id=UUID(uid())))

    # The one untargeted path: a support agent's queue, explicitly marked on the server.
    rec.finds.clear()
    page = await tool("list_disputes", agent, i_disputes.ListDisputesInput(limit=100))
    assert d.id in {x.dispute_id for x in page.disputes}
    assert [c for _, _, c in rec.finds] == [QUEUE_COMMENT]
