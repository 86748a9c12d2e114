"""Status state machines enforced by the database for fx_orders, settlements, stablecoin_transfers, kyc_records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kredete.seed import bulk
from services.payments import PaymentService
from stores.errors import InvalidData
from stores.postgres.errors import pg_errors
from tests.integration.postgres.conftest import drop_database, fresh_database
from tests.integration.postgres.factories import add_rates, add_user, funded_user


@pytest.fixture(scope="module")
async def rates(app_store):
    await add_rates(app_store)
    async with app_store.connection() as conn:
        return {(r["base_currency"], r["quote_currency"]): r for r in await conn.fetch(
            "SELECT id, base_currency, quote_currency, rate, observed_at FROM fx_rates")}


async def _moves(store, table: str, row_id, allowed: list[str], refused: str) -> None:
    """Apply each allowed change in order, then prove the refused one is refused and changed nothing."""
    async with store.transaction() as conn:
        for change in allowed:
            await conn.execute(f"UPDATE {table} SET {change} WHERE id = $1", row_id)
        status = await conn.fetchval(f"SELECT status::text FROM {table} WHERE id = $1", row_id)
    with pytest.raises(InvalidData, match="status change is not allowed"), pg_errors():
        async with store.transaction() as conn:
            await conn.execute(f"UPDATE {table} SET {refused} WHERE id = $1", row_id)
    async with store.connection() as conn:
        assert await conn.fetchval(f"SELECT status::text FROM {table} WHERE id = $1", row_id) == status


async def _quoted_order(conn, uid, rate, *, sell="USD", buy="NGN") -> uuid.UUID:
    order_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO fx_orders (id, user_id, sell_currency, sell_amount_minor, buy_currency, buy_amount_minor, rate, "
        "rate_id, rate_observed_at, created_at) VALUES ($1, $2, $3, 10000, $4, $5, $6, $7, $8, now())",
        order_id, uid, sell, buy, int(10_000 * rate["rate"]), rate["rate"], rate["id"], rate["observed_at"])
    return order_id


async def test_fx_order_transitions(app_store, cipher, rates):
    uid = await funded_user(app_store, cipher)
    executed = await PaymentService(app_store).fx_order(
        {"user_id": uid, "sell_currency": "USD", "buy_currency": "NGN", "sell_amount_minor": 10_000},
        idempotency_key=f"sm-fx-{uid.hex[:12]}")
    await _moves(app_store, "fx_orders", executed.fx_order_id, ["status = 'settled'"],
                 "status = 'failed', executed_at = NULL")  # settled is terminal
    async with app_store.transaction() as conn:
        quoted = await _quoted_order(conn, uid, rates[("USD", "NGN")])
    await _moves(app_store, "fx_orders", quoted, ["status = 'cancelled'"], "status = 'quoted'")


async def test_fx_order_must_use_a_rate_of_its_own_pair(app_store, cipher, rates):
    uid = await add_user(app_store, cipher)
    usd_ngn, gbp_ngn = rates[("USD", "NGN")], rates[("GBP", "NGN")]
    with pytest.raises(InvalidData, match="another currency pair"), pg_errors():
        async with app_store.transaction() as conn:
            # Amounts consistent with the rate, but the rate row is USD/NGN and the order sells GBP.
            await _quoted_order(conn, uid, usd_ngn, sell="GBP")
    async with app_store.transaction() as conn:
        order = await _quoted_order(conn, uid, gbp_ngn, sell="GBP")
    with pytest.raises(InvalidData, match="another currency pair"), pg_errors():
        async with app_store.transaction() as conn:
            await conn.execute("UPDATE fx_orders SET rate_id = $2, rate_observed_at = $3 WHERE id = $1", order,
                               usd_ngn["id"], usd_ngn["observed_at"])


async def test_settlement_transitions(app_store):
    sid, start = uuid.uuid4(), datetime(2025, 3, 1, tzinfo=UTC)
    async with app_store.connection() as conn:
        await conn.execute(
            "INSERT INTO settlements (id, corridor_id, partner, currency, period_start, period_end, "
            "transaction_count, gross_minor, fee_minor, net_minor) VALUES ($1, 'US-NG', 'Thunes', 'NGN', $2, $3, "
            "10, 100000, 1000, 99000)", sid, start, start + timedelta(days=1))
    await _moves(app_store, "settlements", sid, ["status = 'submitted'", "status = 'failed'", "status = 'submitted'",
                                                 "status = 'settled', settled_at = now()"],
                 "status = 'open', settled_at = NULL")


async def test_stablecoin_transfer_transitions(app_store):
    tid = uuid.uuid4()
    async with app_store.connection() as conn:
        await conn.execute(
            "INSERT INTO stablecoin_transfers (id, asset, network, direction, amount_minor, from_address, to_address) "
            "VALUES ($1, 'USDC', 'base', 'inbound', 5000000, $2, $3)", tid, "0x" + "a" * 40, "0x" + "b" * 40)
    await _moves(app_store, "stablecoin_transfers", tid,
                 ["status = 'confirming', tx_hash = '0xfeed'", "status = 'confirmed', confirmed_at = now()"],
                 "status = 'failed', confirmed_at = NULL")
    with pytest.raises(InvalidData, match="status change is not allowed"), pg_errors():
        async with app_store.transaction() as conn:
            await conn.execute("UPDATE stablecoin_transfers SET status = 'pending', confirmed_at = NULL WHERE id = $1",
                               tid)


async def test_kyc_record_transitions(app_store, cipher):
    uid = await add_user(app_store, cipher)
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with app_store.connection() as conn:
        for kid, number in zip(ids, ("22212345678", "A01234567"), strict=True):
            await conn.execute(
                "INSERT INTO kyc_records (id, user_id, document_type, document_number_enc, document_number_bidx, "
                "issuing_country, provider) VALUES ($1, $2, $3, $4, $5, 'NG', 'smile_id')",
                kid, uid, "bvn" if number[0] == "2" else "passport",
                cipher.encrypt(number, f"kyc_records.document_number|{kid}"),
                cipher.blind_index(number, "kyc.bvn" if number[0] == "2" else "kyc.passport"))
    await _moves(app_store, "kyc_records", ids[0], ["status = 'verified', verified_at = now()", "status = 'expired'"],
                 "status = 'verified'")
    await _moves(app_store, "kyc_records", ids[1], ["status = 'rejected', rejection_reason = 'blurred photo'"],
                 "status = 'verified', verified_at = now()")


async def test_the_rules_are_not_writable_by_the_service_role(app_store):
    async with app_store.connection() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO status_transitions VALUES ('kyc_records', 'rejected', 'verified')")


async def test_seed_bulk_validation_refuses_an_order_on_another_pairs_rate(pg_template):
    """The fast seeding path skips fx_orders_guard; its set-based check must catch a mismatched pair."""
    db = fresh_database(pg_template)
    conn = await asyncpg.connect(db.service)
    try:
        with pytest.raises(InvalidData, match=r"1 FX orders whose rate row quotes another currency pair"):
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                at = datetime.now(UTC) - timedelta(minutes=1)
                await conn.execute("INSERT INTO fx_rates (id, base_currency, quote_currency, rate, source, "
                                   "observed_at) VALUES (1, 'USD', 'NGN', 1500, 'test', $1)", at)
                await conn.execute(
                    "INSERT INTO fx_orders (id, sell_currency, sell_amount_minor, buy_currency, buy_amount_minor, "
                    "rate, rate_id, rate_observed_at, created_at) VALUES ($1, 'GBP', 100, 'NGN', 150000, 1500, 1, "
                    "$2, now())", uuid.uuid4(), at)
                await bulk.validate_and_finish(conn, ("fx_rates", "fx_orders"))
        assert await conn.fetchval("SELECT count(*) FROM fx_orders") == 0
    finally:
        await conn.close()
        drop_database(db.admin, db.db)
