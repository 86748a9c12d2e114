"""Write through a service → change event → publisher → Redis pub/sub → every reader drops the old value."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from config.settings import resolve
from services.caching import fx_key, profile_key, read_through, score_key
from services.credit import CreditService
from services.fx import FXService
from services.invalidation import InvalidationPublisher
from services.users import UserService
from stores.mongo.documents import ScorePoint
from stores.scope import RowScope
from tests.integration.postgres.factories import add_rates, add_user


@pytest.fixture
async def readers(cache):
    """Three processes' worth of readers: each its own local tier and subscription."""
    fronts = [read_through(cache, resolve()) for _ in range(3)]
    for f in fronts:
        await f.follow_invalidations()
    yield fronts
    for f in fronts:
        await f.close()


@pytest.fixture
async def publisher(cache, service_store, mongo):
    front = read_through(cache, resolve())
    pub = await InvalidationPublisher(front, postgres=service_store, mongo_db=mongo.db, poll_s=0.5,
                                      name=f"test-{time.time_ns()}").start()
    # The first drain registers the consumer at the current end of the outbox.
    await asyncio.sleep(0.3)
    yield pub
    await pub.stop()


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_profile_update_reaches_every_reader(service_store, cipher, readers, publisher):
    uid = await add_user(service_store, cipher, country="NG")
    services = [UserService(service_store, cache=r) for r in readers]
    scope = RowScope.users(uid)
    for svc in services:  # every reader holds the profile (Redis and its local tier)
        assert (await svc.profile(scope, uid)).kyc_level == "full"
    assert all(len(r.local) == 1 for r in readers)
    before = publisher.published
    await services[0].update_profile(uid, {"kyc_level": "basic"})
    await _until(lambda: publisher.published > before)
    await _until(lambda: all(len(r.local) == 0 for r in readers), timeout=2)
    for svc in services:
        assert (await svc.profile(scope, uid)).kyc_level == "basic"


async def test_fx_rate_update_evicts_the_cached_rate(service_store, readers, publisher, cache):
    await add_rates(service_store)
    fx = [FXService(service_store, cache=r) for r in readers]
    old = await fx[1].rate("USD", "NGN")
    assert await cache.get(fx_key("USD", "NGN")) is not None
    new = await fx[0].record_rate({"base_currency": "USD", "quote_currency": "NGN", "rate": old.rate + 10,
                                   "source": "test", "observed_at": datetime.now(UTC)})
    await publisher.wait_pg(await publisher.events.last_seq())
    await _until(lambda: all(len(r.local) == 0 for r in readers), timeout=2)
    for svc in fx:
        assert (await svc.rate("USD", "NGN")).rate == new.rate == old.rate + 10
    quote = await fx[2].quote({"sell_currency": "USD", "buy_currency": "NGN", "sell_amount_minor": 10_000,
                               "markup_bps": 0})
    assert quote.mid_rate == new.rate and quote.expires_at <= quote.quoted_at + timedelta(seconds=60)
    assert quote.buy_amount_minor == int(Decimal(100) * new.rate * 100)


async def test_score_point_evicts_the_cached_score(mongo, readers, publisher):
    uid = "6f1c2a4e-0000-4000-8000-" + f"{time.time_ns() % 10**12:012d}"
    credit = [CreditService(mongo, cache=r) for r in readers]
    t0 = datetime.now(UTC) - timedelta(days=30)
    await credit[0].record_score(ScorePoint(user_id=uid, bureau="crc_ng", score=600, as_of=t0))
    await _until(lambda: publisher.published > 0, timeout=5)
    scope = RowScope.users(uid)
    for c in credit:
        assert (await c.credit_score(scope, uid)).score == 600
    before = publisher.published
    await credit[1].record_score(ScorePoint(user_id=uid, bureau="crc_ng", score=640, as_of=t0 + timedelta(days=10)))
    await _until(lambda: publisher.published > before)
    await _until(lambda: all(len(r.local) == 0 for r in readers), timeout=2)
    for c in credit:
        assert (await c.credit_score(scope, uid)).score == 640
    assert score_key(uid).startswith("cache:{" + uid)


async def test_scope_is_checked_before_the_cache(service_store, cipher, reader):
    uid, other = await add_user(service_store, cipher), await add_user(service_store, cipher)
    svc = UserService(service_store, cache=reader)
    await svc.profile(RowScope.users(uid), uid)  # cached now
    from stores.errors import NotFound

    with pytest.raises(NotFound):
        await svc.profile(RowScope.users(other), uid)  # a cached value is never served out of scope
    assert str(uid) in profile_key(uid)  # keys carry the user id
