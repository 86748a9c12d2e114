"""Refund rules against the real database: only outgoing payments, refused by the service and by the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from kredete.seed import bulk
from services.payments import PaymentService
from stores.errors import InvalidData
from stores.postgres.errors import pg_errors
from tests.integration.postgres.conftest import drop_database, fresh_database
from tests.integration.postgres.factories import add_rates, counts, funded_user


@pytest.fixture(scope="module")
async def svc(app_store):
    await add_rates(app_store)
    return PaymentService(app_store)


async def _deposit_and_fx(svc: PaymentService, uid: uuid.UUID):
    dep = await svc.deposit({"user_id": uid, "amount_minor": 50_000, "currency": "USD"},
                            idempotency_key=f"dep-{uid.hex[:12]}")
    fx = await svc.fx_order({"user_id": uid, "sell_currency": "USD", "buy_currency": "NGN",
                             "sell_amount_minor": 10_000}, idempotency_key=f"fx-{uid.hex[:12]}")
    return dep, fx


def _direct_refund(original, amount: int = 100, status: str = "pending") -> tuple:
    return (uuid.uuid4(), original.transaction_id, original.created_at, amount, original.currency, status)


INSERT_REFUND = ("INSERT INTO refunds (id, transaction_id, transaction_created_at, amount_minor, currency, reason, "
                 "status, completed_at) VALUES ($1, $2, $3, $4, $5, 'direct', $6::refund_status, "
                 "CASE WHEN $6 = 'completed' THEN now() END)")


async def test_service_refuses_to_refund_a_deposit_or_an_fx_conversion(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    dep, fx = await _deposit_and_fx(svc, uid)
    before = await counts(app_store)
    for original in (dep, fx):
        with pytest.raises(InvalidData, match="only an outgoing payment"):
            await svc.refund({"user_id": uid, "transaction_id": original.transaction_id, "amount_minor": 100,
                              "reason": "give it back"}, idempotency_key=f"refund-{original.transaction_id.hex[:10]}")
    assert await counts(app_store) == before


@pytest.mark.parametrize("status", ["pending", "completed", "failed"])
async def test_database_refuses_a_direct_refund_of_a_deposit_or_an_fx_conversion(svc, app_store, cipher, status):
    uid = await funded_user(app_store, cipher)
    for original in await _deposit_and_fx(svc, uid):
        with pytest.raises(InvalidData, match="only an outgoing payment"), pg_errors():
            async with app_store.transaction() as conn:
                await conn.execute(INSERT_REFUND, *_direct_refund(original, status=status))


async def test_an_outgoing_payment_is_still_refundable_directly(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await svc.create_payment({"user_id": uid, "corridor": "US-NG", "amount_minor": 10_000, "currency": "USD",
                                    "counterparty_name": "Adaeze Nwosu"}, idempotency_key=f"pay-{uid.hex[:12]}")
    async with app_store.transaction() as conn:
        await conn.execute(INSERT_REFUND, *_direct_refund(pay))
        assert await conn.fetchval("SELECT count(*) FROM refunds WHERE transaction_id = $1", pay.transaction_id) == 1


async def test_seed_bulk_validation_refuses_a_refunded_deposit(pg_template):
    """The fast seeding path skips triggers; its set-based check must catch what refunds_guard would."""
    db = fresh_database(pg_template)
    conn = await asyncpg.connect(db.service)
    try:
        uid, wallet, tx, now = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
        with pytest.raises(InvalidData, match=r"1 refunds of a transaction that is not an outgoing payment "
                                              r"\(refunds_original_refundable\)"):
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute("INSERT INTO users (id, country, home_currency) VALUES ($1, 'US', 'USD')", uid)
                await conn.execute("INSERT INTO wallets (id, user_id, kind, currency) VALUES ($1, $2, 'customer', "
                                   "'USD')", wallet, uid)
                await conn.execute(
                    "INSERT INTO transactions (id, created_at, updated_at, user_id, kind, status, wallet_id, "
                    "amount_minor, currency, reference, completed_at) VALUES ($1, $2, $2, $3, 'deposit', "
                    "'completed', $4, 1000, 'USD', 'KRD-AAAAAAAAAAAA', $2)", tx, now, uid, wallet)
                await conn.execute(INSERT_REFUND, uuid.uuid4(), tx, now, 500, "USD", "pending")
                await bulk.validate_and_finish(conn, ("users", "wallets", "transactions", "refunds"))
        assert await conn.fetchval("SELECT count(*) FROM refunds") == 0
    finally:
        await conn.close()
        drop_database(db.admin, db.db)
