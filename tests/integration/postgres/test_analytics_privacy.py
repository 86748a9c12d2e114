"""Aggregates cannot be read back down to one person's payments: small cells are withheld (and counted only as the
guard allows), cells are whole buckets, the bucket still filling up is left out. On seeded data, checked against
the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from guards.principal import Role
from kredete.seed.payments import SeedConfig, seed_payments
from services.payments import PaymentService
from stores.postgres import AnalyticsRepository
from tests.integration.postgres.conftest import wait_for_replica
from tests.integration.postgres.factories import add_rates, funded_user
from tests.integration.postgres.tool_calls import call, principal, tool_runtime

SPAN = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))  # the seed's whole range
#: Every (bucket, corridor, currency pair) group of completed remittances, with its size, straight from the table.
CELLS = ("SELECT date_trunc($1, created_at, 'UTC') AS bucket, corridor_id, currency, dest_currency, "
         "count(*) AS n, count(DISTINCT user_id) AS users, sum(amount_minor)::bigint AS amount "
         "FROM transactions WHERE status = 'completed' AND corridor_id IS NOT NULL AND created_at >= $2 "
         "AND created_at < $3 GROUP BY 1, 2, 3, 4")


@pytest.fixture(scope="module")
async def seeded(pg_db, app_store, service_store, cipher):
    conn = await asyncpg.connect(pg_db.service)
    try:
        await seed_payments(conn, SeedConfig(users=400, seed=9, transactions_per_user=10), cipher)
    finally:
        await conn.close()
    # One remittance made now: it falls in the current (open) bucket.
    await add_rates(app_store)
    uid = await funded_user(app_store, cipher, 1_000_000)
    res = await PaymentService(app_store).create_payment(
        {"user_id": uid, "corridor": "US-NG", "amount_minor": 12_345, "currency": "USD",
         "counterparty_name": "Amina Bello"}, idempotency_key=f"now-{uid.hex[:10]}")
    assert await wait_for_replica(service_store, "SELECT id FROM transactions WHERE id = $1",
                                  res.transaction_id) == res.transaction_id
    return res


def reported(withheld: int, shown: int, k: int) -> int:
    """What `corridor_volume` may say about withheld cells: nothing unless a cell is shown, then a multiple of k."""
    return withheld - withheld % k if shown else 0


async def cells(store, granularity: str, date_from=SPAN[0], date_to=SPAN[1]) -> dict[tuple, asyncpg.Record]:
    async with store.connection() as conn:
        rows = await conn.fetch(CELLS, granularity, date_from, date_to)
    return {(r["bucket"], r["corridor_id"], r["currency"], r["dest_currency"]): r for r in rows}


async def test_small_cells_are_withheld_and_only_counted(agent_store, service_store, seeded):
    truth = await cells(service_store, "month")
    out = await AnalyticsRepository(agent_store).volume_by_corridor(*SPAN, "month", min_cell_size=5)
    shown = {(c.bucket, c.corridor_id, c.currency, c.dest_currency): c for c in out}
    small = [k for k, r in truth.items() if r["n"] < 5 or r["users"] < 5]
    assert shown and small, "the seed must give both shown and withheld cells"
    for key, cell in shown.items():
        assert truth[key]["n"] >= 5 and truth[key]["users"] >= 5
        assert (cell.transaction_count, cell.amount_minor) == (truth[key]["n"], truth[key]["amount"])
    assert set(shown) == set(truth) - set(small)
    assert out.suppressed_cells == len(small)


@pytest.mark.parametrize("k", [5, 2])
async def test_a_risk_analyst_never_gets_a_cell_of_one_payment(agent_store, service_store, cipher, seeded, k):
    rt = tool_runtime(agent_store, cipher, aggregate_min_cell_size=k)
    analyst = principal(Role.RISK_ANALYST)
    date_from, date_to = datetime(2025, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    args = {"date_from": date_from.isoformat(), "date_to": date_to.isoformat()}
    pages = [(await call(rt, "corridor_volume", analyst, **args)).structured_content]
    while pages[-1].get("next_cursor"):  # every page of the answer
        pages.append((await call(rt, "corridor_volume", analyst, **args,
                                 cursor=pages[-1]["next_cursor"])).structured_content)
    body = {**pages[0], "rows": [row for page in pages for row in page["rows"]],
            "omitted": {"rows": sum(page.get("omitted", {}).get("rows", 0) for page in pages)}}
    # The window's count of withheld cells, the same on every page.
    assert {page["suppressed_cells"] for page in pages} == {body["suppressed_cells"]}
    truth = await cells(service_store, "day", date_from, date_to)
    # What the red team saw: most corridor-days hold one payment (one person's row, amount and all).
    assert sum(1 for r in truth.values() if r["n"] == 1) > len(truth) / 2
    assert body["min_cell_size"] == k
    small = {key for key, r in truth.items() if r["n"] < k or r["users"] < k}
    assert small and body["suppressed_cells"] == reported(len(small), len(set(truth) - small), k)
    shown = set()
    for row in body["rows"]:
        key = (datetime.fromisoformat(row["day"]), row["corridor"], row["currency"], row["dest_currency"])
        t = truth[key]
        assert (row["transactions"], row["volume_minor"]) == (t["n"], t["amount"])
        assert t["n"] >= k and t["users"] >= k
        shown.add(key)
    # All of them, page after page, unless the token budget cut a page (then it says how many it left out).
    assert shown <= set(truth) - small
    assert len(shown) + body.get("omitted", {}).get("rows", 0) == len(set(truth) - small)
    if k == 2:
        assert shown, "at k=2 some corridor-days of the seed are big enough to be shown"


async def test_the_minimum_cell_size_comes_from_settings(agent_store, service_store, cipher, seeded):
    args = {"date_from": SPAN[0].isoformat(), "date_to": (SPAN[0] + timedelta(days=400)).isoformat()}
    five = (await call(tool_runtime(agent_store, cipher), "corridor_volume", principal(Role.RISK_ANALYST),
                       **args)).structured_content
    two = (await call(tool_runtime(agent_store, cipher, aggregate_min_cell_size=2), "corridor_volume",
                      principal(Role.RISK_ANALYST), **args)).structured_content
    assert two["min_cell_size"] == 2 and len(two["rows"]) > len(five["rows"])
    assert min(r["transactions"] for r in two["rows"]) >= 2
    assert two["suppressed_cells"] % 2 == 0 and five["suppressed_cells"] % 5 == 0


async def test_a_window_of_small_cells_answers_like_a_window_without_activity(agent_store, service_store, cipher,
                                                                              seeded):
    """A suppressed count must not tell a caller that a quiet corridor had a payment on a given day."""
    rt, analyst = tool_runtime(agent_store, cipher), principal(Role.RISK_ANALYST)
    truth = await cells(service_store, "day")
    by_day: dict[tuple, list] = {}
    for (day, corridor, *_), r in truth.items():
        by_day.setdefault((day, corridor), []).append(r)
    day, corridor = next(key for key, rs in sorted(by_day.items()) if all(r["n"] < 5 or r["users"] < 5 for r in rs))
    window = {"date_from": day.isoformat(), "date_to": (day + timedelta(days=1)).isoformat()}
    raw = await AnalyticsRepository(agent_store).volume_by_corridor(day, day + timedelta(days=1), corridor=corridor)
    assert raw.items == [] and raw.suppressed_cells >= 1  # the payment is there, withheld
    active = (await call(rt, "corridor_volume", analyst, corridor=corridor, **window)).structured_content
    nothing = (await call(rt, "corridor_volume", analyst, corridor="FR-NG", **window)).structured_content
    assert active == nothing == {"rows": [], "suppressed_cells": 0, "min_cell_size": 5, "next_cursor": None}


async def test_with_cells_shown_the_withheld_count_is_coarsened_to_the_cell_size(agent_store, cipher, seeded):
    date_from, date_to = datetime(2025, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    for k in (2, 3):
        raw = await AnalyticsRepository(agent_store).volume_by_corridor(date_from, date_to, min_cell_size=k)
        body = (await call(tool_runtime(agent_store, cipher, aggregate_min_cell_size=k), "corridor_volume",
                           principal(Role.RISK_ANALYST), date_from=date_from.isoformat(),
                           date_to=date_to.isoformat())).structured_content
        assert raw.items and raw.suppressed_cells >= k
        assert body["suppressed_cells"] == reported(raw.suppressed_cells, len(raw.items), k)
        assert body["suppressed_cells"] % k == 0 and raw.suppressed_cells - k < body["suppressed_cells"]


async def test_ranges_are_whole_buckets_so_two_queries_cannot_be_differenced(agent_store, seeded):
    repo = AnalyticsRepository(agent_store)
    day = datetime(2026, 3, 10, tzinfo=UTC)
    # k=1 to see every cell: cutting a day at 13:00 or 13:01 must not change it (else the difference of the two
    # answers would be the payments of that minute).
    a = await repo.volume_by_corridor(day + timedelta(hours=13), day + timedelta(days=20, hours=5), min_cell_size=1)
    b = await repo.volume_by_corridor(day + timedelta(hours=13, minutes=1), day + timedelta(days=20, hours=4),
                                      min_cell_size=1)
    whole = await repo.volume_by_corridor(day, day + timedelta(days=21), min_cell_size=1)
    assert a.items == b.items == whole.items and whole.items
    assert min(c.bucket for c in whole) == day and max(c.bucket for c in whole) <= day + timedelta(days=20)


async def test_the_bucket_still_filling_up_is_left_out(agent_store, seeded):
    repo = AnalyticsRepository(agent_store)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    window = (now - timedelta(days=2), now + timedelta(days=1))
    open_too = await repo.volume_by_corridor(*window, min_cell_size=1, closed_buckets_only=False)
    assert any(c.bucket == today and c.corridor_id == "US-NG" for c in open_too)  # the payment made now
    closed = await repo.volume_by_corridor(*window, min_cell_size=1)
    assert all(c.bucket < today for c in closed)
    assert [c for c in open_too if c.bucket < today] == closed.items


async def test_corridor_volume_pages_and_refuses_a_cursor_of_other_arguments(agent_store, cipher, seeded):
    rt = tool_runtime(agent_store, cipher, aggregate_min_cell_size=2)
    analyst = principal(Role.RISK_ANALYST)
    args = {"date_from": SPAN[0].isoformat(), "date_to": (SPAN[0] + timedelta(days=400)).isoformat()}
    whole = (await call(rt, "corridor_volume", analyst, **args, limit=60)).structured_content
    first = (await call(rt, "corridor_volume", analyst, **args, limit=4)).structured_content
    assert len(first["rows"]) == 4 and first["next_cursor"] and whole["rows"][:4] == first["rows"]
    second = (await call(rt, "corridor_volume", analyst, **args, limit=4,
                         cursor=first["next_cursor"])).structured_content
    assert second["rows"] == whole["rows"][4:8]
    assert first["suppressed_cells"] == second["suppressed_cells"] == whole["suppressed_cells"]
    with pytest.raises(ToolError, match="different query"):
        await call(rt, "corridor_volume", analyst, **args, corridor="US-NG", cursor=first["next_cursor"])
    with pytest.raises(ToolError, match="different query"):  # another scope: another minimum cell size
        await call(tool_runtime(agent_store, cipher, aggregate_min_cell_size=3), "corridor_volume", analyst,
                   **args, cursor=first["next_cursor"])
    with pytest.raises(ToolError, match="invalid arguments"):  # a page that would not fit the output budget
        await call(rt, "corridor_volume", analyst, **args, limit=100)
