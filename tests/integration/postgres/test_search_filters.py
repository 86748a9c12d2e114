"""search_transactions filters on seeded data: only values the caller can see are filterable (no oracle on a
hidden account reference or a masked name), exact counterparty match, platform reference, the published status
values, counterparty_type, and pages cut by the token budget whose every row stays reachable by cursor."""

from __future__ import annotations

import json

import asyncpg
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from agent_tools.tools.transactions import SearchTransactionsInput
from guards.access import STAFF_VISIBLE_COUNTERPARTIES
from guards.budget import MAX_OUTPUT_TOKENS, count_tokens
from guards.principal import Role
from kredete.seed.payments import SeedConfig, seed_payments
from services.payments import PaymentService
from stores.postgres import TransactionRepository
from stores.postgres.models import COUNTERPARTY_TYPES
from stores.scope import RowScope
from tests.integration.postgres.conftest import wait_for_replica
from tests.integration.postgres.factories import add_rates, funded_user
from tests.integration.postgres.tool_calls import call, principal, tool_runtime

HIDDEN_REFERENCE = "Zenith Bank 7632978437"
PERSON = "Amina Bello"


@pytest.fixture(scope="module")
async def world(pg_db, app_store, service_store, cipher):
    """Seeded users (every kind of transaction, merchants included) plus one customer whose remittances carry a
    known person name, a name stored with odd spacing, and a hidden account reference."""
    conn = await asyncpg.connect(pg_db.service)
    try:
        # (Seed 5 once had a transaction id masked as an IBAN; redaction now never touches a UUID:
        # tests/unit/test_redaction_ids.py.)
        await seed_payments(conn, SeedConfig(users=60, seed=6, transactions_per_user=10), cipher)
    finally:
        await conn.close()
    await add_rates(app_store)
    svc = PaymentService(app_store)
    uid = await funded_user(app_store, cipher, 2_000_000, name="Ngozi Adebayo")
    made = []
    for i, (name, ref) in enumerate([(PERSON, HIDDEN_REFERENCE), (" Kwame   Mensah ", "MTN MoMo 0244123456"),
                                     ("Amina Bellows", "GTBank 0123456789")]):
        res = await svc.create_payment({"user_id": uid, "corridor": "US-NG", "amount_minor": 10_000 + i,
                                        "currency": "USD", "counterparty_name": name, "counterparty_reference": ref,
                                        "description": "school fees"}, idempotency_key=f"filters-{uid.hex[:8]}-{i}")
        made.append(res.transaction_id)
    assert await wait_for_replica(service_store, "SELECT id FROM transactions WHERE id = $1", made[-1]) == made[-1]
    async with service_store.connection() as c:
        merchant = await c.fetchval("SELECT counterparty_name FROM transactions WHERE kind = 'card_payment' "
                                    "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
        merchant_rows = await c.fetchval("SELECT count(*) FROM transactions WHERE kind = 'card_payment' AND "
                                         "counterparty_name = $1", merchant)
    return {"user": uid, "made": made, "merchant": merchant, "merchant_rows": merchant_rows}


@pytest.fixture(scope="module")
def rt(agent_store, cipher):
    return tool_runtime(agent_store, cipher)


def body(result) -> dict:
    assert not result.is_error
    return result.structured_content


async def search(rt, who, **args) -> dict:
    return body(await call(rt, "search_transactions", who, **args))


# --- F1: no oracle on what the caller cannot see ------------------------------------------------------------

async def test_a_support_agent_cannot_recover_a_hidden_reference_character_by_character(rt, world):
    agent = principal(Role.SUPPORT_AGENT)
    miss = await search(rt, agent, counterparty="no such counterparty anywhere")
    assert miss["transactions"] == []
    # The red team's probe: growing prefixes of the account reference, alone and narrowed to the user.
    for n in range(2, len(HIDDEN_REFERENCE) + 1):
        probe = HIDDEN_REFERENCE[:n]
        if len(probe.strip()) < 2:
            continue
        assert await search(rt, agent, counterparty=probe) == miss, probe
        assert (await search(rt, agent, counterparty=probe, user_id=str(world["user"])))["transactions"] == []
    assert (await search(rt, agent, counterparty="7632978437"))["transactions"] == []
    # Nor can the customer who owns it: the reference is never returned, so it is never a filter.
    owner = principal(Role.CUSTOMER, world["user"])
    assert (await search(rt, owner, counterparty=HIDDEN_REFERENCE))["transactions"] == []


async def test_a_support_agent_cannot_confirm_a_masked_person_name(rt, world):
    agent = principal(Role.SUPPORT_AGENT)
    miss = await search(rt, agent, counterparty="Nobody Atall", user_id=str(world["user"]))
    for probe in ["Am", "Ami", "Amina", "Amina B", "Amina Bell", PERSON, PERSON.upper(), f"  {PERSON} "]:
        assert await search(rt, agent, counterparty=probe, user_id=str(world["user"])) == miss, probe
    # Payout counterparties (the user's own name) are persons too.
    assert (await search(rt, agent, counterparty="Ngozi Adebayo"))["transactions"] == []


async def test_customers_match_their_own_counterparties_exactly_ignoring_case_and_spaces(rt, world):
    me = principal(Role.CUSTOMER, world["user"])
    first, odd, near = world["made"]
    for text in [PERSON, "amina bello", "  AMINA   BELLO\t"]:
        assert [t["transaction_id"] for t in (await search(rt, me, counterparty=text))["transactions"]] == [
            str(first)], text
    # The stored name " Kwame   Mensah " is compared normalised too.
    assert [t["transaction_id"] for t in (await search(rt, me, counterparty="kwame mensah"))["transactions"]] == [
        str(odd)]
    # Exact only: neither a prefix nor a substring matches (Amina Bellows is not Amina Bello).
    for partial in ["Amina", "Bello", "mina Bel", "Amina Bellow"]:
        assert (await search(rt, me, counterparty=partial))["transactions"] == [], partial
    assert [t["transaction_id"] for t in (await search(rt, me, counterparty="Amina Bellows"))["transactions"]] == [
        str(near)]


async def test_staff_match_merchant_names_exactly(rt, world):
    agent = principal(Role.SUPPORT_AGENT)
    merchant = world["merchant"]
    rows = (await search(rt, agent, counterparty=f"  {merchant.upper()} ", limit=100))["transactions"]
    assert rows and all(t["kind"] == "card_payment" and t["counterparty_type"] == "merchant" for t in rows)
    assert all(merchant in t["counterparty_name"] for t in rows)  # visible to staff (inside «data»)
    everything, cursor = [], None
    while True:
        page = await TransactionRepository(rt.repos.transactions.store).search(
            RowScope.everyone(), counterparty=merchant.lower(), counterparty_types=STAFF_VISIBLE_COUNTERPARTIES,
            cursor=cursor, limit=100)
        everything += page.items
        if not (cursor := page.next_cursor):
            break
    assert len(everything) == world["merchant_rows"]
    assert (await search(rt, agent, counterparty=merchant[:-1]))["transactions"] == []


async def test_reference_filter_exact_or_prefix(rt, world):
    me = principal(Role.CUSTOMER, world["user"])
    mine = (await search(rt, me, limit=100))["transactions"]
    target = next(t for t in mine if t["transaction_id"] == str(world["made"][0]))
    exact = (await search(rt, me, reference=target["reference"]))["transactions"]
    assert [t["transaction_id"] for t in exact] == [target["transaction_id"]]
    agent = principal(Role.SUPPORT_AGENT)
    prefix = target["reference"][:6]
    found = (await search(rt, agent, reference=prefix, limit=100))["transactions"]
    assert target["transaction_id"] in {t["transaction_id"] for t in found}
    assert all(t["reference"].startswith(prefix) for t in found)
    async with rt.repos.transactions.store.connection() as c:
        assert len(found) == min(100, await c.fetchval(
            "SELECT count(*) FROM transactions WHERE starts_with(reference, $1)", prefix))
    for bad in ["krd-ABC", "KRD-", "KRD-ABC%", "ABC"]:
        with pytest.raises(ToolError, match="invalid arguments"):
            await call(rt, "search_transactions", agent, reference=bad)


# --- F9: the published status values are exactly the database's ---------------------------------------------

async def test_published_statuses_are_the_database_enum_and_all_accepted(rt, world):
    async with rt.repos.transactions.store.connection() as c:
        db = await c.fetchval("SELECT array_agg(v::text ORDER BY v) "
                              "FROM unnest(enum_range(NULL::transaction_status)) v")
        newest = {r["status"]: r["ids"] for r in await c.fetch(
            "SELECT status::text AS status, array_agg(id::text ORDER BY created_at DESC, id DESC) AS ids "
            "FROM transactions GROUP BY 1")}
    schema = SearchTransactionsInput.model_json_schema()["properties"]["status"]
    published = next(s["enum"] for s in schema["anyOf"] if "enum" in s)
    assert sorted(published) == sorted(db)
    agent = principal(Role.SUPPORT_AGENT)
    for status in published:
        rows = (await search(rt, agent, status=status, limit=100))["transactions"]
        assert all(t["status"] == status for t in rows)
        ids = newest.get(status, [])
        assert [t["transaction_id"] for t in rows] == ids[: len(rows)] and bool(rows) == bool(ids), status
    for gone in ["refunded", "partially_refunded"]:
        with pytest.raises(ToolError, match="invalid arguments"):
            await call(rt, "search_transactions", agent, status=gone)


# --- counterparty_type --------------------------------------------------------------------------------------

async def test_every_row_says_its_counterparty_type(rt, world):
    expected = {"remittance": "person", "payout": "person", "card_payment": "merchant", "deposit": "system",
                "refund": "system", "fx_conversion": "system"}
    assert all(COUNTERPARTY_TYPES[k] == v for k, v in expected.items())
    agent = principal(Role.SUPPORT_AGENT)
    page = await call(rt, "search_transactions", agent, limit=100)
    rows = body(page)["transactions"]
    assert rows and all(t["counterparty_type"] == expected[t["kind"]] for t in rows)
    first = rows[0]
    assert f"counterparty ({first['counterparty_type']})" in page.content[0].text.splitlines()[1]
    async with rt.repos.transactions.store.connection() as c:
        samples = await c.fetch("SELECT DISTINCT ON (kind) kind::text, id::text, reference FROM transactions "
                                "ORDER BY kind, created_at DESC")
    assert {r["kind"] for r in samples} == set(expected)  # the seed has every kind
    for r in samples:
        found = body(await call(rt, "search_transactions", agent, reference=r["reference"]))["transactions"]
        assert [(t["transaction_id"], t["counterparty_type"]) for t in found] == [(r["id"], expected[r["kind"]])]
        detail = await call(rt, "get_transaction", agent, transaction_id=r["id"])
        assert body(detail)["counterparty_type"] == expected[r["kind"]]
        assert f"counterparty ({expected[r['kind']]})" in detail.content[0].text


# --- F5: a page cut by the budget continues from the last row shown -------------------------------------------

async def test_every_row_of_a_cut_page_is_reachable_by_following_cursors(rt, world):
    agent = principal(Role.SUPPORT_AGENT)
    args = {"date_from": "2025-01-01T00:00:00Z", "date_to": "2026-03-01T00:00:00Z", "limit": 100}
    async with rt.repos.transactions.store.connection() as c:
        expected = [str(r["id"]) for r in await c.fetch(
            "SELECT id FROM transactions WHERE created_at >= '2025-01-01Z' AND created_at < '2026-03-01Z' "
            "ORDER BY created_at DESC, id DESC")]
    assert len(expected) > 100
    seen, cursor, cut_pages = [], None, 0
    while True:
        page = await search(rt, agent, **args, **({"cursor": cursor} if cursor else {}))
        assert count_tokens(page) <= MAX_OUTPUT_TOKENS
        if page.get("truncated"):
            cut_pages += 1
            assert len(page["transactions"]) < 100 and page["omitted"]["transactions"] > 0
        seen += [t["transaction_id"] for t in page["transactions"]]
        if not (cursor := page["next_cursor"]):
            break
    assert cut_pages >= 1, "the budget must have cut at least one page for this test to mean anything"
    assert seen == expected  # every row, once, in order


async def test_a_reissued_cursor_keeps_its_binding_to_the_query(rt, world):
    agent = principal(Role.SUPPORT_AGENT)
    args = {"date_from": "2025-01-01T00:00:00Z", "date_to": "2026-03-01T00:00:00Z", "limit": 100}
    page = await search(rt, agent, **args)
    assert page.get("truncated") and page["next_cursor"]
    with pytest.raises(ToolError, match="different query"):
        await call(rt, "search_transactions", agent, cursor=page["next_cursor"], limit=100, status="completed")
    with pytest.raises(ToolError, match="different query"):  # another scope: the customer's own rows
        await call(rt, "search_transactions", principal(Role.CUSTOMER, world["user"]), cursor=page["next_cursor"],
                   **args)
    assert json.dumps(page).count(page["next_cursor"]) == 1
