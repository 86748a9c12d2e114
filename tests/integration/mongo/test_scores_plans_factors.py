"""Score series, action plans and credit factors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from stores.errors import InvalidData, NotFound
from stores.mongo.credit import ActionPlanRepository, CreditFactorRepository, ScoreHistoryRepository
from stores.mongo.documents import ActionPlan, ActionStep, Bureau, CreditFactor, ScorePoint, now
from stores.scope import RowScope
from tests.integration.mongo.factories import uid


async def test_series_ordering_range_and_idempotency(db):
    repo = ScoreHistoryRepository(db)
    user = uid()
    months = [datetime(2024, m, 1, tzinfo=UTC) for m in range(1, 13)]
    for i, m in enumerate(months):
        await repo.record(ScorePoint(user_id=user, bureau="crc_ng", score=500 + i, as_of=m))
    await repo.record(ScorePoint(user_id=user, bureau="crc_ng", score=999, as_of=months[0]))  # kept: idempotent
    scope = RowScope.users(user)
    series = await repo.series(scope, user)
    assert [p.score for p in series] == [500 + i for i in range(12)]
    part = await repo.series(scope, user, months[3], months[5])
    assert [p.as_of for p in part] == months[3:6]
    assert await repo.series(RowScope.users(uid()), user) == []
    assert len(await repo.series(scope, user, limit=5)) == 5


async def test_action_plan_versions(db):
    repo = ActionPlanRepository(db)
    user = uid()
    steps = [ActionStep(title="Pay card below 30%", factor="utilization")]
    p = await asyncio.gather(*(repo.add_version(ActionPlan(user_id=user, steps=steps, target_score=700 + i))
                               for i in range(3)))
    assert sorted(x.version for x in p) == [1, 2, 3]
    latest = await repo.latest(RowScope.users(user), user)
    assert latest.version == 3
    with pytest.raises(NotFound):
        await repo.latest(RowScope.users(uid()), user)


async def test_factors_idempotent(db):
    repo = CreditFactorRepository(db)
    user, rid = uid(), uid()
    fs = [CreditFactor(user_id=user, report_id=rid, bureau="crc_ng", as_of=now(), factor=f, impact="negative",
                       weight=0.3) for f in ("utilization", "inquiries")]
    assert await repo.add_many(fs) == 2
    assert await repo.add_many(fs) == 0
    assert len(await repo.for_user(RowScope.users(user), user, report_id=rid)) == 2


async def test_invalid_documents_rejected(db):
    with pytest.raises(InvalidData):
        await ScoreHistoryRepository(db).record(ScorePoint.model_construct(user_id=uid(), bureau=Bureau.CRC_NG,
                                                                           score=5000, as_of=now()))
