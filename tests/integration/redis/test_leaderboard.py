"""Credit-builder leaderboards: opt-in, pseudonymous, kept current by the credit service's events; agents get
aggregates only, withheld below the minimum cell size."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.credit import CreditService
from services.leaderboard import LeaderboardService, pseudonym
from stores.cache.leaderboard import board_key
from stores.mongo.documents import ScorePoint
from tests.integration.postgres.factories import add_user


@pytest.fixture
async def boards(service_store, mongo, cache):
    corridor = "US-NG"
    svc = LeaderboardService(service_store, mongo.db, cache, handle_key=b"test-key", min_cell_size=3)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.follow(stop, interval=0.05))
    yield svc, corridor
    stop.set()
    await asyncio.wait({task}, timeout=5)
    if task.done() and task.exception():
        raise task.exception()


async def _until(predicate, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_events_update_opted_in_users_under_handles_only(boards, service_store, cipher, mongo, cache):
    svc, corridor = boards
    credit = CreditService(mongo)
    month_start = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    month = month_start.strftime("%Y-%m")
    await cache.delete(board_key(corridor, month))  # the stack's Redis outlives test runs
    users = [await add_user(service_store, cipher) for _ in range(4)]
    outsider = await add_user(service_store, cipher)
    handles = [await svc.opt_in(u, corridor) for u in users[:3]]
    assert len(set(handles)) == 3 and all(str(u) not in h for u, h in zip(users, handles, strict=False))
    assert handles[0] == await svc.opt_in(users[0], corridor)  # idempotent, same handle
    for i, u in enumerate([*users, outsider]):
        await credit.record_score(ScorePoint(user_id=str(u), bureau="crc_ng", score=550,
                                             as_of=month_start - timedelta(days=80)))
        await credit.record_score(ScorePoint(user_id=str(u), bureau="crc_ng", score=560 + 10 * i, as_of=month_start))

    async def ranked():
        top = await svc.top(corridor, month)
        return top if len(top) == 3 else None

    top = await _until(ranked)
    assert [h for _, h, _ in top] == [handles[2], handles[1], handles[0]]  # improvements 30, 20, 10
    assert [s for _, _, s in top] == [30.0, 20.0, 10.0]
    assert not any(str(u) in h for u in users for _, h, _ in top)
    # Only opted-in users: the fourth user and the outsider never appear.
    agg = await svc.aggregate(corridor, month)
    assert agg.participants == 3 and agg.median_improvement == 20.0 and not agg.suppressed
    await svc.opt_out(users[0])
    assert len(await svc.top(corridor, month)) == 2
    small = await svc.aggregate(corridor, month)  # 2 < the minimum cell size of 3
    assert small.suppressed and small.participants is None and small.mean_improvement is None


def test_handles_are_keyed_pseudonyms():
    users = [uuid.uuid4() for _ in range(50)]
    assert all(pseudonym(u, b"k1") == pseudonym(u, b"k1") for u in users)  # stable
    assert sum(pseudonym(u, b"k1") != pseudonym(u, b"k2") for u in users) > 45  # keyed: another key, other names
    assert len({pseudonym(u, b"k1") for u in users}) > 45
