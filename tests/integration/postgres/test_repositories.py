"""Repositories the services and MCP tools call: scope inside SQL, keyset cursors, typed results, caps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.payments import PaymentService
from stores.errors import InvalidData, NotFound, StoreError
from stores.postgres import (
    AnalyticsRepository,
    FxRepository,
    TransactionRepository,
    UserRepository,
    WalletRepository,
)
from stores.postgres.transactions import escape_like
from stores.scope import RowScope
from tests.integration.postgres.conftest import wait_for_replica
from tests.integration.postgres.factories import add_rates, funded_user

NAMES = ["100% Legit_Ltd", "100X LegitXLtd", "Amina Bello", "Kwame Mensah", "Wanjiru Kamau"]


@pytest.fixture(scope="module")
async def world(app_store, service_store, cipher):
    """Two customers with payments through three corridors, and a coach over the first."""
    await add_rates(app_store)
    svc = PaymentService(app_store)
    a = await funded_user(app_store, cipher, 2_000_000, name="Ngozi Adebayo",
                          address="7 Awolowo Road\nIkoyi, Lagos")
    b = await funded_user(app_store, cipher, 2_000_000, name="Kofi Boateng", country="GH", home_currency="GHS")
    made = {a: [], b: []}
    for i, name in enumerate(NAMES):
        for uid, corridor in ((a, ["US-NG", "US-GH", "US-KE"][i % 3]), (b, "US-GH")):
            res = await svc.create_payment({"user_id": uid, "corridor": corridor, "amount_minor": 10_000 * (i + 1),
                                            "currency": "USD", "counterparty_name": name,
                                            "description": "school fees" if i % 2 else "call me on 0803 123 4567"},
                                           idempotency_key=f"world-{uid.hex[:8]}-{i}")
            made[uid].append(res.transaction_id)
    async with service_store.connection() as conn:
        await conn.execute("INSERT INTO coach_assignments (coach_subject, user_id) VALUES ('coach-7', $1)", a)
    last = made[b][-1]
    assert await wait_for_replica(service_store, "SELECT id FROM transactions WHERE id = $1", last) == last
    return {"a": a, "b": b, "made": made}


async def test_scope_is_applied_inside_the_query(agent_store, world):
    repo = TransactionRepository(agent_store)
    a, b = world["a"], world["b"]
    mine = await repo.search(RowScope.users(a))
    assert {t.user_id for t in mine.items} == {a} and len(mine.items) == 6  # 5 payments + the deposit
    assert (await repo.search(RowScope.none())).items == []
    both = await repo.search(RowScope.everyone(), limit=100)
    assert {a, b} <= {t.user_id for t in both.items}


async def test_filters(agent_store, world):
    repo = TransactionRepository(agent_store)
    scope = RowScope.users(world["a"], world["b"])
    ng = await repo.search(scope, corridor="US-NG")
    assert ng.items and all(t.corridor_id == "US-NG" and t.dest_currency == "NGN" for t in ng.items)
    big = await repo.search(scope, min_amount_minor=30_000, max_amount_minor=40_000, currency="USD")
    assert {t.amount_minor for t in big.items} == {30_000, 40_000}
    assert len((await repo.search(scope, status="completed")).items) == 12
    assert (await repo.search(scope, status="failed")).items == []
    assert (await repo.search(scope, date_to=datetime.now(UTC) - timedelta(days=1))).items == []
    with pytest.raises(InvalidData):
        await repo.search(scope, corridor="US to NG")
    with pytest.raises(InvalidData):
        await repo.search(scope, status="deleted")  # type: ignore[arg-type]


async def test_counterparty_search_is_an_exact_match_on_visible_types(agent_store, world):
    repo = TransactionRepository(agent_store)
    scope = RowScope.users(world["a"])
    everyone = ("person", "merchant", "system")  # what a customer's own search may compare
    exact = await repo.search(scope, counterparty="100% legit_ltd", counterparty_types=everyone)
    assert [t.counterparty_name for t in exact.items] == ["100% Legit_Ltd"]  # % and _ are not wildcards
    for partial in ("100%", "legit_", "kwame"):
        assert (await repo.search(scope, counterparty=partial, counterparty_types=everyone)).items == []
    assert len((await repo.search(scope, counterparty=" KWAME  mensah", counterparty_types=everyone)).items) == 1
    # By default (staff) only merchant and system counterparties are compared: these are persons.
    assert (await repo.search(scope, counterparty="Kwame Mensah")).items == []
    assert escape_like("a%b_c\\") == "a\\%b\\_c\\\\"


async def test_keyset_cursor_pages_through_everything_once(agent_store, world):
    repo = TransactionRepository(agent_store)
    scope = RowScope.users(world["a"], world["b"])
    seen, cursor, pages = [], None, 0
    while True:
        page = await repo.search(scope, limit=5, cursor=cursor)
        seen += [t.id for t in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 12 and pages == 3
    everything = (await repo.search(scope, limit=100)).items
    assert seen == [t.id for t in everything]


async def test_a_cursor_cannot_widen_the_scope(agent_store, world):
    repo = TransactionRepository(agent_store)
    first = await repo.search(RowScope.users(world["a"]), limit=2)
    assert first.next_cursor
    with pytest.raises(InvalidData, match="different query"):
        await repo.search(RowScope.everyone(), limit=2, cursor=first.next_cursor)
    with pytest.raises(InvalidData, match="different query"):
        await repo.search(RowScope.users(world["a"]), limit=2, cursor=first.next_cursor, corridor="US-NG")
    with pytest.raises(InvalidData, match="malformed"):
        await repo.search(RowScope.users(world["a"]), cursor="not-a-cursor")


async def test_limit_is_capped(agent_store, world):
    page = await TransactionRepository(agent_store).search(RowScope.everyone(), limit=10**6)
    assert len(page.items) <= 100


async def test_get_returns_detail_or_not_found_outside_scope(agent_store, world):
    repo = TransactionRepository(agent_store)
    tx_id = world["made"][world["a"]][0]
    detail = await repo.get(RowScope.users(world["a"]), tx_id)
    assert detail.id == tx_id and len(detail.entries) == 5 and detail.fx_rate is not None
    assert detail.refunded_minor == 0
    with pytest.raises(NotFound) as outside:
        await repo.get(RowScope.users(world["b"]), tx_id)
    with pytest.raises(NotFound) as missing:
        await repo.get(RowScope.everyone(), uuid.uuid4())
    assert str(outside.value) == str(missing.value)
    assert len(await repo.get_many(RowScope.users(world["b"]), world["made"][world["a"]])) == 0


async def test_get_many_returns_exactly_the_asked_rows_in_scope(agent_store, world):
    repo = TransactionRepository(agent_store)
    a, b = world["made"][world["a"]], world["made"][world["b"]]
    asked = [a[0], a[3], b[1], uuid.uuid4(), a[0]]  # two of a's, one of b's, one unknown, a duplicate
    mine = await repo.get_many(RowScope.users(world["a"]), asked)
    assert sorted(t.id for t in mine) == sorted([a[0], a[3]])
    assert [t.created_at for t in mine] == sorted((t.created_at for t in mine), reverse=True)
    both = await repo.get_many(RowScope.users(world["a"], world["b"]), asked)
    assert {t.id for t in both} == {a[0], a[3], b[1]} and len(both) == 3
    assert {t.user_id for t in both if t.id == b[1]} == {world["b"]}
    assert await repo.get_many(RowScope.none(), asked) == []
    assert len(await repo.get_many(RowScope.everyone(), [*a, *b] * 20)) == 10


async def test_wallet_balances(agent_store, world):
    repo = WalletRepository(agent_store)
    balances = await repo.balances(RowScope.users(world["a"]), world["a"])
    assert [b.currency for b in balances] == ["USD"]
    minor = balances[0].balance_minor
    assert str(balances[0].balance) == f"{minor // 100}.{minor % 100:02d}"
    assert await repo.balances(RowScope.users(world["b"]), world["a"]) == []


async def test_profiles_and_known_pii(agent_store, app_store, cipher, world):
    agent_users = UserRepository(agent_store, cipher=cipher)
    profile = await agent_users.get_profile(RowScope.users(world["a"]), world["a"])
    assert profile.country == "NG" and profile.full_name is None
    with pytest.raises(NotFound):
        await agent_users.get_profile(RowScope.users(world["b"]), world["a"])
    with pytest.raises(StoreError):  # the agent role may not read email/phone ciphertexts
        await agent_users.get_profile(RowScope.users(world["a"]), world["a"], include_pii=True)
    full = await UserRepository(app_store, cipher=cipher).get_profile(RowScope.everyone(), world["a"],
                                                                      include_pii=True)
    assert full.full_name == "Ngozi Adebayo" and full.phone.startswith("+234")
    pii = await agent_users.known_pii([world["a"], world["b"]])
    assert pii[world["a"]] == {"names": ["Ngozi Adebayo", "Ngozi", "Adebayo"],
                               "addresses": ["7 Awolowo Road\nIkoyi, Lagos", "7 Awolowo Road"]}
    assert "Kofi Boateng" in pii[world["b"]]["names"]
    assert await agent_users.users_assigned_to("coach-7") == [world["a"]]
    assert await agent_users.users_assigned_to("coach-unknown") == []
    assert await UserRepository(app_store, cipher=cipher).find_by_phone(full.phone) == world["a"]


async def test_aggregations_and_time_series(agent_store, world):
    analytics = AnalyticsRepository(agent_store)
    now = datetime.now(UTC)
    vols = await analytics.volume_by_corridor(now - timedelta(days=1), now + timedelta(days=1), min_cell_size=1,
                                              closed_buckets_only=False)
    by_corridor = {}
    for v in vols:
        by_corridor[v.corridor_id] = by_corridor.get(v.corridor_id, 0) + v.transaction_count
    assert by_corridor["US-GH"] >= 7 and by_corridor["US-NG"] >= 2
    assert {"bucket", "corridor_id", "amount_minor"} <= set(vols[0].model_dump())
    assert "user_id" not in vols[0].model_dump()
    with pytest.raises(InvalidData):
        await analytics.volume_by_corridor(now, now - timedelta(days=1))
    days = await analytics.wallet_daily_volume(RowScope.users(world["a"]), user_id=world["a"],
                                               date_from=now - timedelta(days=1), date_to=now + timedelta(days=1))
    assert sum(d.entries for d in days) == 6 and sum(d.credits_minor for d in days) == 2_000_000
    hidden = await analytics.wallet_daily_volume(RowScope.users(world["b"]), user_id=world["a"],
                                                 date_from=now - timedelta(days=1), date_to=now + timedelta(days=1))
    assert hidden.items == [] and not hidden.truncated


async def test_rate_history_is_the_pair_in_the_window_newest_first(service_store, agent_store):
    base = datetime(2025, 6, 1, tzinfo=UTC)
    async with service_store.connection() as conn:
        for hours in range(6):  # hourly GBP/KES, plus a KES/GBP row and one outside the window
            await conn.execute("INSERT INTO fx_rates (base_currency, quote_currency, rate, source, observed_at) "
                               "VALUES ('GBP', 'KES', $1, 'hist', $2)", 160 + hours, base + timedelta(hours=hours))
        await conn.execute("INSERT INTO fx_rates (base_currency, quote_currency, rate, source, observed_at) "
                           "VALUES ('KES', 'GBP', 0.006, 'hist', $1)", base + timedelta(hours=2))
    last = base + timedelta(hours=5)
    assert await wait_for_replica(service_store, "SELECT id FROM fx_rates WHERE source = 'hist' AND observed_at = $1 "
                                  "AND base_currency = 'GBP'", last) is not None
    fx = FxRepository(agent_store)
    window = await fx.rate_history("GBP", "KES", base + timedelta(hours=1), base + timedelta(hours=5))
    assert [r.observed_at for r in window] == [base + timedelta(hours=h) for h in (4, 3, 2, 1)]
    assert [int(r.rate) for r in window] == [164, 163, 162, 161]
    assert {(r.base_currency, r.quote_currency) for r in window} == {("GBP", "KES")}
    assert [r.observed_at for r in await fx.rate_history("GBP", "KES", base, last, limit=2)] == [
        base + timedelta(hours=4), base + timedelta(hours=3)]
    assert await fx.rate_history("GBP", "KES", last + timedelta(hours=1), last + timedelta(days=1)) == []


async def test_get_and_lock_use_created_at_when_given(agent_store, app_store, world):
    repo = TransactionRepository(agent_store)
    tx_id = world["made"][world["a"]][1]
    full = await repo.get(RowScope.users(world["a"]), tx_id)
    pinned = await repo.get(RowScope.users(world["a"]), tx_id, created_at=full.created_at)
    assert pinned == full
    with pytest.raises(NotFound):  # the created_at is part of the lookup, not decoration
        await repo.get(RowScope.users(world["a"]), tx_id, created_at=full.created_at - timedelta(microseconds=1))
    async with app_store.transaction() as conn:
        row = await TransactionRepository.lock(conn, tx_id, world["a"], created_at=full.created_at)
        assert row["id"] == tx_id
        with pytest.raises(NotFound):
            await TransactionRepository.lock(conn, tx_id, world["a"], created_at=full.created_at + timedelta(days=31))
        with pytest.raises(NotFound):
            await TransactionRepository.lock(conn, tx_id, world["b"], created_at=full.created_at)


async def test_capped_aggregates_say_they_were_truncated(agent_store, world):
    analytics = AnalyticsRepository(agent_store)
    now = datetime.now(UTC)
    window = (now - timedelta(days=1), now + timedelta(days=1))
    small = {"min_cell_size": 1, "closed_buckets_only": False}  # this test is about the row cap
    full = await analytics.volume_by_corridor(*window, corridor="US-GH", **small)
    assert len(full) >= 1 and full.truncated is False
    by_hour_and_corridor = await analytics.volume_by_corridor(*window, **small)
    assert len(by_hour_and_corridor) >= 3 and not by_hour_and_corridor.truncated
    cut = await analytics.volume_by_corridor(*window, max_rows=2, **small)
    assert len(cut.items) == 2 and cut.truncated is True
    assert cut.items == by_hour_and_corridor.items[:2]
    days = await analytics.wallet_daily_volume(RowScope.users(world["a"]), user_id=world["a"], date_from=window[0],
                                               date_to=window[1])
    assert days.truncated is False
    both = await analytics.wallet_daily_volume(RowScope.everyone(), wallet_id=days[0].wallet_id,
                                               date_from=window[0], date_to=window[1], max_rows=1)
    assert len(both) == 1 and both.truncated is (len(days) > 1)


async def test_get_reads_the_lines_and_refunds_the_separate_reads_find(agent_store, app_store, cipher, world):
    """One statement reads the detail with its ledger lines and refunds: the same rows, order and types as a read
    of each table (two refunds, one still pending)."""
    uid = await funded_user(app_store, cipher, 500_000)
    pay = await PaymentService(app_store).create_payment(
        {"user_id": uid, "corridor": "US-NG", "amount_minor": 40_000, "currency": "USD",
         "counterparty_name": "Adaeze Nwosu"}, idempotency_key=f"lines-{uid.hex[:12]}")
    refund_ids = [uuid.uuid4(), uuid.uuid4()]
    async with app_store.transaction() as conn:
        for rid, status in zip(refund_ids, ("completed", "pending"), strict=True):
            await conn.execute(
                "INSERT INTO refunds (id, transaction_id, transaction_created_at, amount_minor, currency, reason, "
                "status, completed_at) VALUES ($1, $2, $3, 1000, 'USD', 'returned', $4::refund_status, "
                "CASE WHEN $4 = 'completed' THEN now() END)", rid, pay.transaction_id, pay.created_at, status)
    async with app_store.connection() as conn:
        entries = await conn.fetch("SELECT line_no, wallet_id, currency, direction::text, amount_minor, entry_type "
                                   "FROM ledger_entries WHERE transaction_id = $1 ORDER BY line_no",
                                   pay.transaction_id)
        refunds = await conn.fetch("SELECT id, amount_minor, currency, status::text, reason, created_at, "
                                   "refund_transaction_id FROM refunds WHERE transaction_id = $1 "
                                   "ORDER BY created_at, id", pay.transaction_id)
    assert await wait_for_replica(agent_store, "SELECT id FROM refunds WHERE id = $1", refund_ids[1]) is not None

    detail = await TransactionRepository(agent_store).get(RowScope.users(uid), pay.transaction_id)

    assert len(entries) >= 2 and len(refunds) == 2
    assert [e.model_dump() for e in detail.entries] == [dict(e) for e in entries]
    assert [r.model_dump() for r in detail.refunds] == [dict(r) for r in refunds]
    assert {r.id for r in detail.refunds} == set(refund_ids)
    assert all(isinstance(e.wallet_id, uuid.UUID) and e.direction in ("debit", "credit") for e in detail.entries)
    assert all(r.created_at.tzinfo is not None for r in detail.refunds)
    assert detail.refunded_minor == 2000
    with pytest.raises(NotFound):  # the lines do not widen the scope
        await TransactionRepository(agent_store).get(RowScope.users(world["a"]), pay.transaction_id)
