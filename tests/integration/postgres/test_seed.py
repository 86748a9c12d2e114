"""Seeding: deterministic (byte-identical rows), resumable after an interruption, idempotent, and sound."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from typer.testing import CliRunner

from kredete.cli import app
from kredete.seed.payments import INJECTIONS, SeedConfig, seed_payments
from kredete.seed.people import person
from stores.postgres.users import pii_context
from tests.integration.postgres.conftest import drop_database, fresh_database

#: Deterministic columns of each table (ciphertexts are randomised by design; their blind indexes are not).
CHECKSUMS = {
    "users": "id, created_at, status, country, home_currency, kyc_level, email_bidx, phone_bidx",
    "kyc_records": "id, user_id, document_type, document_number_bidx, status, submitted_at, verified_at",
    "wallets": "id, user_id, kind, currency, balance_minor, status",
    "transactions": "*",
    "ledger_entries": "*",
    "refunds": "*",
    "fx_orders": "*",
    "fx_rates": "*",
    "stablecoin_transfers": "*",
    "sessions": "*",
    "subscriptions": "*",
    "notification_prefs": "*",
    "payment_methods": "id, user_id, kind, provider, label, last4, fingerprint_bidx",
    "settlements": "*",
    "hedging_positions": "*",
    "liquidity_pools": "*",
    "coach_assignments": "*",
}
USERS = 520  # three batches of 250, the last one partial


async def checksums(conn: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    out = {}
    for table, cols in CHECKSUMS.items():
        out[table] = tuple(await conn.fetchrow(
            f"SELECT count(*), md5(COALESCE(string_agg(r::text, '|' ORDER BY r::text), '')) "
            f"FROM (SELECT {cols} FROM {table}) r"))
    return out


@pytest.fixture(scope="module")
def two_databases(pg_template):
    dbs = [fresh_database(pg_template), fresh_database(pg_template)]
    yield dbs
    for d in dbs:
        drop_database(d.admin, d.db)


@pytest.fixture(scope="module")
async def seeded(two_databases, cipher):
    """DB 1 seeded in one go; DB 2 interrupted after one batch, resumed with fewer users, then topped up."""
    one, two = two_databases
    c1, c2 = await asyncpg.connect(one.service), await asyncpg.connect(two.service)
    full = await seed_payments(c1, SeedConfig(users=USERS, seed=7, transactions_per_user=8), cipher)
    cut = await seed_payments(c2, SeedConfig(users=300, seed=7, transactions_per_user=8), cipher,
                              stop_after_batches=1)
    resumed = await seed_payments(c2, SeedConfig(users=300, seed=7, transactions_per_user=8), cipher)
    grown = await seed_payments(c2, SeedConfig(users=USERS, seed=7, transactions_per_user=8), cipher)
    yield {"c1": c1, "c2": c2, "full": full, "cut": cut, "resumed": resumed, "grown": grown}
    await c1.close()
    await c2.close()


async def test_same_seed_gives_identical_rows_whatever_the_batching(seeded):
    assert seeded["cut"].batches_loaded == 1 and seeded["resumed"].users_loaded == 50
    # DB 1 took the bulk fast path end to end; DB 2's first batch too, the rest the row-by-row safe path.
    assert seeded["full"].mode == "bulk" and seeded["cut"].mode == "bulk"
    assert seeded["resumed"].mode == "safe" and seeded["grown"].mode == "safe"
    assert seeded["grown"].users_loaded == USERS - 300
    first, second = await checksums(seeded["c1"]), await checksums(seeded["c2"])
    assert first == second
    assert first["transactions"][0] > USERS * 7 and first["ledger_entries"][0] > first["transactions"][0]


async def test_running_again_duplicates_nothing(seeded, cipher):
    before = await checksums(seeded["c1"])
    again = await seed_payments(seeded["c1"], SeedConfig(users=USERS, seed=7, transactions_per_user=8), cipher)
    assert again.batches_loaded == 0 and again.users_loaded == 0
    assert await checksums(seeded["c1"]) == before


async def test_seeded_books_balance_and_wallets_never_go_negative(seeded):
    conn = seeded["c1"]
    assert await conn.fetch("SELECT * FROM wallet_balance_mismatches") == []
    assert await conn.fetchval("SELECT count(*) FROM wallets WHERE kind = 'customer' AND balance_minor < 0") == 0
    unbalanced = await conn.fetchval(
        "SELECT count(*) FROM (SELECT transaction_id, currency FROM ledger_entries GROUP BY 1, 2 HAVING "
        "sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) <> 0) x")
    assert unbalanced == 0
    assert await conn.fetchval("SELECT count(*) FROM transactions t WHERE status = 'completed' AND NOT EXISTS "
                               "(SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id)") == 0
    corridors = {r[0] for r in await conn.fetch("SELECT DISTINCT corridor_id FROM transactions "
                                                 "WHERE corridor_id IS NOT NULL")}
    assert {"US-NG", "GB-GH", "US-KE"} <= corridors
    currencies = {r[0] for r in await conn.fetch("SELECT DISTINCT currency FROM ledger_entries")}
    assert {"NGN", "GHS", "KES", "USD", "GBP", "USDC"} <= currencies


async def test_free_text_exercises_redaction_and_injection_handling(seeded):
    conn = seeded["c1"]
    injected = await conn.fetchval("SELECT count(*) FROM transactions WHERE description = ANY($1::text[])",
                                   list(INJECTIONS))
    phones = await conn.fetchval("SELECT count(*) FROM transactions WHERE description ~ 'call me on 0[0-9]{2,3} '")
    bvns = await conn.fetchval("SELECT count(*) FROM transactions WHERE memo ~ 'BVN is 22[0-9]{9}'")
    assert injected > 0 and phones > 0 and bvns > 0


async def test_pii_is_encrypted_and_decrypts_to_the_person(seeded, cipher):
    conn = seeded["c1"]
    p = person(7, 3)
    row = await conn.fetchrow("SELECT full_name_enc, phone_enc FROM users WHERE id = $1", p.user_id)
    assert p.last_name not in row["full_name_enc"]
    assert cipher.decrypt(row["full_name_enc"], pii_context("full_name", p.user_id)) == p.full_name
    assert cipher.decrypt(row["phone_enc"], pii_context("phone", p.user_id)) == p.phone
    coached = await conn.fetch("SELECT user_id FROM coach_assignments WHERE coach_subject = 'coach-1'")
    assert {r[0] for r in coached} == {person(7, i).user_id for i in range(10)}


async def test_seed_command(pg_template):
    db = fresh_database(pg_template)
    try:
        args = ["seed", "--users", "30", "--seed", "5", "--transactions-per-user", "4", "--skip-mongo",
                "--skip-documents", "--url", db.service]  # this test's fixture starts PostgreSQL only
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert result.exit_code == 0, result.output
        again = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert again.exit_code == 0 and "1 already there" in again.output
        conn = await asyncpg.connect(db.service)
        try:
            assert await conn.fetchval("SELECT count(*) FROM users") == 30
        finally:
            await conn.close()
    finally:
        drop_database(db.admin, db.db)
