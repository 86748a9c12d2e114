"""Refund rules against the real database: only outgoing payments, refused by the service and by the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kredete.seed import bulk
from services.payments import PaymentService, RefundRequest
from stores.errors import InvalidData, NotFound
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


async def _payment(svc: PaymentService, uid: uuid.UUID, key: str, amount: int = 10_000):
    return await svc.create_payment({"user_id": uid, "corridor": "US-NG", "amount_minor": amount, "currency": "USD",
                                     "counterparty_name": "Adaeze Nwosu"}, idempotency_key=key)


async def test_a_completed_refund_cannot_be_flipped_to_failed_to_escape_the_cap(svc, app_store, service_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await _payment(svc, uid, f"cap-{uid.hex[:12]}")
    done = await svc.refund({"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 6_000,
                             "reason": "partial"}, idempotency_key=f"cap-refund-{uid.hex[:8]}")
    for store in (app_store, service_store):  # not even the table owner
        with pytest.raises(InvalidData, match="refund status change is not allowed"), pg_errors():
            async with store.transaction() as conn:
                await conn.execute("UPDATE refunds SET status = 'failed', completed_at = NULL WHERE id = $1",
                                   done.refund_id)
    with pytest.raises(InvalidData, match="exceed the original"):
        await svc.refund({"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 6_000,
                          "reason": "again"}, idempotency_key=f"cap-again-{uid.hex[:8]}")


async def test_refund_status_machine(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await _payment(svc, uid, f"sm-{uid.hex[:12]}")
    a, b = _direct_refund(pay), _direct_refund(pay)
    async with app_store.transaction() as conn:
        await conn.execute(INSERT_REFUND, *a)
        await conn.execute(INSERT_REFUND, *b)
        await conn.execute("UPDATE refunds SET status = 'completed', completed_at = now() WHERE id = $1", a[0])
        await conn.execute("UPDATE refunds SET status = 'failed' WHERE id = $1", b[0])
        await conn.execute("UPDATE refunds SET reason = 'amended' WHERE id = $1", b[0])  # not a fact of money
    refused = [(a[0], "status = 'pending', completed_at = NULL"), (b[0], "status = 'pending'"),
               (b[0], "status = 'completed', completed_at = now()")]
    for refund_id, change in refused:
        with pytest.raises(InvalidData, match="refund status change is not allowed"), pg_errors():
            async with app_store.transaction() as conn:
                await conn.execute(f"UPDATE refunds SET {change} WHERE id = $1", refund_id)


async def test_refund_facts_are_immutable(svc, app_store, service_store, cipher):
    uid = await funded_user(app_store, cipher)
    small, big = await _payment(svc, uid, f"imm-a-{uid.hex[:10]}", 1_000), await _payment(
        svc, uid, f"imm-b-{uid.hex[:10]}", 50_000)
    refund = await svc.refund({"user_id": uid, "transaction_id": small.transaction_id, "amount_minor": 1_000,
                               "reason": "all of it"}, idempotency_key=f"imm-refund-{uid.hex[:8]}")
    changes = [
        # Moving a refund onto another original used to skip refunds_guard entirely.
        ("transaction_id = $2, transaction_created_at = $3", (big.transaction_id, big.created_at)),
        ("transaction_id = $2", (big.transaction_id,)),
        ("amount_minor = 1", ()), ("currency = 'NGN'", ()), ("created_at = created_at - interval '1 day'", ()),
        ("refund_transaction_id = $2, refund_transaction_created_at = $3", (big.transaction_id, big.created_at)),
    ]
    for change, args in changes:
        with pytest.raises(InvalidData, match="of a refund cannot change"), pg_errors():
            async with service_store.transaction() as conn:
                await conn.execute(f"UPDATE refunds SET {change} WHERE id = $1", refund.refund_id, *args)
    async with app_store.connection() as conn:
        row = await conn.fetchrow("SELECT transaction_id, amount_minor, currency FROM refunds WHERE id = $1",
                                  refund.refund_id)
    assert tuple(row) == (small.transaction_id, 1_000, "USD")


async def test_a_pending_refund_whose_credit_is_posted_cannot_fail(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await _payment(svc, uid, f"posted-{uid.hex[:12]}")
    credited = await svc.refund({"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 500,
                                 "reason": "credit"}, idempotency_key=f"posted-refund-{uid.hex[:8]}")
    pending = _direct_refund(pay)
    async with app_store.transaction() as conn:
        await conn.execute(INSERT_REFUND, *pending)
        await conn.execute("UPDATE refunds SET refund_transaction_id = $2, refund_transaction_created_at = $3 "
                           "WHERE id = $1", pending[0], credited.transaction_id, credited.created_at)
    with pytest.raises(InvalidData, match="credit is posted cannot fail"), pg_errors():
        async with app_store.transaction() as conn:
            await conn.execute("UPDATE refunds SET status = 'failed' WHERE id = $1", pending[0])


async def test_refund_by_the_originals_created_at_and_its_replay(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await _payment(svc, uid, f"pinned-{uid.hex[:12]}")
    req = {"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 700, "reason": "pinned",
           "transaction_created_at": pay.created_at}
    first = await svc.refund(req, idempotency_key=f"pinned-refund-{uid.hex[:8]}")
    before = await counts(app_store)
    again = await svc.refund(req, idempotency_key=f"pinned-refund-{uid.hex[:8]}")
    assert again.replayed and (again.transaction_id, again.refund_id) == (first.transaction_id, first.refund_id)
    assert await counts(app_store) == before
    with pytest.raises(NotFound):  # a wrong created_at does not find the original
        await svc.refund({**req, "transaction_created_at": pay.created_at - timedelta(seconds=1)},
                         idempotency_key=f"pinned-wrong-{uid.hex[:8]}")
    # Without it, a request hashes as it did before the field existed (retries across a deploy still match).
    plain = RefundRequest(user_id=uid, transaction_id=pay.transaction_id, amount_minor=700, reason="pinned")
    assert set(plain.body()) == {"user_id", "transaction_id", "amount_minor", "reason"}


async def test_fx_order_replay_returns_the_same_conversion(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    req = {"user_id": uid, "sell_currency": "USD", "buy_currency": "NGN", "sell_amount_minor": 5_000}
    first = await svc.fx_order(req, idempotency_key=f"fx-replay-{uid.hex[:8]}")
    again = await svc.fx_order(req, idempotency_key=f"fx-replay-{uid.hex[:8]}")
    assert again.replayed and not first.replayed
    assert (again.transaction_id, again.fx_order_id, again.created_at) == (
        first.transaction_id, first.fx_order_id, first.created_at)
