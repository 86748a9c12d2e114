"""The corridor-day rollup (migration 0015) gives `volume_by_corridor` exactly what summing `transactions` gives:
on seeded data (built by the seed's bulk path), and as payments are made and reversed through the writer path
(kept by the triggers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kredete.seed.payments import SeedConfig, seed_payments
from services.payments import PaymentService
from stores.errors import InvalidData
from stores.postgres import AnalyticsRepository
from stores.postgres.transactions import TransactionRepository
from tests.integration.postgres.conftest import wait_for_replica
from tests.integration.postgres.factories import add_rates, funded_user

SPAN = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))  # the seed's whole range
ROLLUP = "SELECT * FROM corridor_days ORDER BY bucket, corridor_id, currency, dest_currency"


@pytest.fixture(scope="module")
async def seeded(pg_db, cipher):
    conn = await asyncpg.connect(pg_db.service)
    try:
        await seed_payments(conn, SeedConfig(users=300, seed=11, transactions_per_user=10), cipher)
    finally:
        await conn.close()


async def both(repo: AnalyticsRepository, *args, **kw):
    rolled = await repo.volume_by_corridor(*args, **kw)
    scanned = await repo.volume_by_corridor(*args, from_rollup=False, **kw)
    return rolled, scanned


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("days", [1, 30, 400])
async def test_the_rollup_answers_like_the_scan_on_seeded_data(agent_store, seeded, k, days):
    repo = AnalyticsRepository(agent_store)
    for start in (datetime(2025, 2, 3, 7, 30, tzinfo=UTC), datetime(2026, 5, 17, tzinfo=UTC)):
        rolled, scanned = await both(repo, start, start + timedelta(days=days), min_cell_size=k)
        assert (rolled.items, rolled.suppressed_cells, rolled.truncated) == \
               (scanned.items, scanned.suppressed_cells, scanned.truncated)
    whole, reference = await both(repo, *SPAN, min_cell_size=k, corridor="US-NG")
    assert (whole.items, whole.suppressed_cells) == (reference.items, reference.suppressed_cells)
    assert whole.items if k < 5 else whole.suppressed_cells  # the seed's corridor-days: shown at k<5, withheld at 5
    capped, capped_ref = await both(repo, *SPAN, min_cell_size=min(k, 2), max_rows=3)
    assert capped.truncated and capped_ref.truncated and capped.items == capped_ref.items


async def test_the_triggers_follow_payments_and_reversals(agent_store, app_store, service_store, cipher, seeded):
    await add_rates(app_store)
    payments = PaymentService(app_store)
    users = [await funded_user(app_store, cipher, 2_000_000) for _ in range(3)]
    made = []
    # Three users, one of them twice: the day's US-NG cell gains 4 transactions but 3 distinct users.
    for i, uid in enumerate([*users, users[0]]):
        res = await payments.create_payment(
            {"user_id": uid, "corridor": "US-NG", "amount_minor": 10_000 + i, "currency": "USD",
             "counterparty_name": "Amina Bello"}, idempotency_key=f"rollup-{i}-{uid.hex[:8]}")
        made.append(res.transaction_id)
    repo = AnalyticsRepository(agent_store)
    now = datetime.now(UTC)
    window = (now - timedelta(days=2), now + timedelta(days=1))

    async def check() -> list:
        async with service_store.connection() as conn:
            last = await conn.fetchval("SELECT max(updated_at) FROM transactions")
        assert await wait_for_replica(agent_store, "SELECT 1 FROM transactions WHERE updated_at >= $1 LIMIT 1", last)
        rolled, scanned = await both(repo, *window, min_cell_size=1, closed_buckets_only=False)
        assert rolled.items == scanned.items and rolled.suppressed_cells == scanned.suppressed_cells
        return [c for c in rolled if c.corridor_id == "US-NG" and c.bucket.date() == now.date()]

    (cell,) = await check()
    assert cell.transaction_count >= 4
    async with service_store.connection() as conn:
        users_before = await conn.fetchval(
            "SELECT users FROM corridor_days WHERE corridor_id = 'US-NG' AND bucket = $1", cell.bucket)
        # Reverse one of users[0]'s two payments (the user still counts), then the only one of users[1].
        for tx_id in (made[0], made[1]):
            created = await conn.fetchval("SELECT created_at FROM transactions WHERE id = $1", tx_id)
            await TransactionRepository.set_status(conn, tx_id, created, "reversed")
        after = await conn.fetchrow(
            "SELECT users, transactions FROM corridor_days WHERE corridor_id = 'US-NG' AND bucket = $1", cell.bucket)
    assert (after["users"], after["transactions"]) == (users_before - 1, cell.transaction_count - 2)
    await check()
    # Concurrent payments, three by each of two users: still the scan's answer.
    others = [await funded_user(app_store, cipher, 2_000_000) for _ in range(2)]
    await asyncio.gather(*(payments.create_payment(
        {"user_id": uid, "corridor": "US-NG", "amount_minor": 20_000 + i, "currency": "USD",
         "counterparty_name": "Amina Bello"},
        idempotency_key=f"rollup-concurrent-{i}-{uid.hex[:8]}") for i, uid in enumerate(others * 3)))
    (cell,) = await check()
    assert cell.transaction_count == after["transactions"] + 6
    # What the triggers kept is what a rebuild from the table gives.
    async with service_store.transaction() as conn:
        kept = [dict(r) for r in await conn.fetch(ROLLUP)]
        await conn.execute("SELECT corridor_days_rebuild()")
        assert [dict(r) for r in await conn.fetch(ROLLUP)] == kept


async def test_an_incremental_seed_is_followed_by_the_triggers(pg_db, cipher, agent_store, service_store, seeded):
    """More users of the same run: the seed's safe path (COPY per batch, triggers on), not the bulk rebuild."""
    conn = await asyncpg.connect(pg_db.service)
    try:
        report = await seed_payments(conn, SeedConfig(users=340, seed=11, transactions_per_user=10), cipher)
        total = await conn.fetchval("SELECT count(*) FROM transactions")
    finally:
        await conn.close()
    assert report.mode == "safe" and report.users_loaded == 40
    assert await wait_for_replica(agent_store, "SELECT 1 WHERE (SELECT count(*) FROM transactions) >= $1", total)
    rolled, scanned = await both(AnalyticsRepository(agent_store), *SPAN, min_cell_size=1)
    assert rolled.items and (rolled.items, rolled.suppressed_cells) == (scanned.items, scanned.suppressed_cells)


async def test_the_agent_reads_the_cells_not_the_per_user_rows(agent_store):
    async with agent_store.connection() as conn:
        assert await conn.fetchval("SELECT has_table_privilege('corridor_days', 'SELECT')")
        assert not await conn.fetchval("SELECT has_table_privilege('corridor_day_users', 'SELECT')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT corridor_days_rebuild()")


@pytest.mark.parametrize("from_rollup", [True, False])
async def test_paging_returns_every_shown_cell_once_in_order(agent_store, seeded, from_rollup):
    repo = AnalyticsRepository(agent_store)
    kw = {"min_cell_size": 2, "from_rollup": from_rollup}
    whole = await repo.volume_by_corridor(*SPAN, **kw)
    assert not whole.truncated and whole.next_cursor is None and len(whole.items) > 20
    pages, cursor = [], None
    while True:
        page = await repo.volume_by_corridor(*SPAN, max_rows=7, cursor=cursor, **kw)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [c for p in pages for c in p.items] == whole.items
    assert all(len(p.items) == 7 and p.truncated for p in pages[:-1]) and not pages[-1].truncated
    # The window's counts, not the page's: every page says the same.
    assert {(p.suppressed_cells, p.shown_cells) for p in pages} == {(whole.suppressed_cells, len(whole.items))}
    # A cursor after a row of a cut page resumes right after that row.
    resumed = await repo.volume_by_corridor(*SPAN, max_rows=7, cursor=pages[0].cursor_after(2), **kw)
    assert resumed.items == whole.items[3:10]


async def test_a_corridor_cursor_is_refused_with_other_arguments(agent_store, seeded):
    repo = AnalyticsRepository(agent_store)
    first = await repo.volume_by_corridor(*SPAN, min_cell_size=2, max_rows=3)
    assert first.next_cursor
    others = [{"min_cell_size": 3}, {"min_cell_size": 2, "corridor": "US-NG"},
              {"min_cell_size": 2, "from_rollup": False}, {"min_cell_size": 2, "closed_buckets_only": False}]
    for kw in others:
        with pytest.raises(InvalidData, match="different query"):
            await repo.volume_by_corridor(*SPAN, max_rows=3, cursor=first.next_cursor, **kw)
    with pytest.raises(InvalidData, match="different query"):
        await repo.volume_by_corridor(SPAN[0] + timedelta(days=1), SPAN[1], min_cell_size=2, cursor=first.next_cursor)
    for forged in ("not-a-cursor", first.next_cursor[:-4]):
        with pytest.raises(InvalidData, match="cursor"):
            await repo.volume_by_corridor(*SPAN, min_cell_size=2, cursor=forged)
    # A different page size is the same query: the cursor goes on.
    assert (await repo.volume_by_corridor(*SPAN, min_cell_size=2, max_rows=5, cursor=first.next_cursor)).items
