"""Money integrity against the real database: bad input is refused with a clear error, nothing is half-written."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.payments import PaymentService
from stores.errors import Conflict, InvalidData
from stores.postgres.errors import pg_errors
from stores.postgres.transactions import NewTransaction, Posting, TransactionRepository
from stores.postgres.wallets import WalletRepository, house_wallet_id
from tests.integration.postgres.factories import add_rates, add_user, counts, funded_user


@pytest.fixture(scope="module")
async def svc(app_store):
    await add_rates(app_store)
    return PaymentService(app_store)


def _payment(uid: uuid.UUID, amount: int = 10_000, **kw) -> dict:
    return {"user_id": uid, "corridor": "US-NG", "amount_minor": amount, "currency": "USD",
            "counterparty_name": "Adaeze Nwosu", "counterparty_reference": "GTBank 0123456789", **kw}


async def _bare_transaction(conn: asyncpg.Connection, uid: uuid.UUID, wallet: uuid.UUID, amount: int = 1000):
    tx_id, now = uuid.uuid4(), datetime.now(UTC)
    await TransactionRepository.insert(conn, NewTransaction(
        id=tx_id, created_at=now, user_id=uid, kind="deposit", status="pending", wallet_id=wallet,
        amount_minor=amount, currency="USD", reference="KRD-" + tx_id.hex[:12].upper()))
    return tx_id, now


async def test_balanced_payment_moves_money_and_books_balance(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    result = await svc.create_payment(_payment(uid), idempotency_key="pay-balanced-1")
    assert result.status == "completed" and result.fee_minor == 299 + 150  # fixed + 1.5% of 100.00
    assert result.dest_currency == "NGN" and result.dest_amount_minor == 15_302_500  # 100 USD x 1530.25
    assert result.fx_rate is not None
    async with app_store.connection() as conn:
        assert await conn.fetchval("SELECT balance_minor FROM wallets WHERE user_id = $1", uid) == 500_000 - 10_449
        assert await conn.fetch("SELECT * FROM wallet_balance_mismatches") == []
        nets = await conn.fetch(
            "SELECT currency, sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) AS net "
            "FROM ledger_entries WHERE transaction_id = $1 GROUP BY currency", result.transaction_id)
        assert {r["currency"]: r["net"] for r in nets} == {"USD": 0, "NGN": 0}


async def test_unbalanced_posting_is_rejected_at_commit(app_store, cipher):
    uid = await funded_user(app_store, cipher)
    before = await counts(app_store)
    with pytest.raises(InvalidData, match="unbalanced posting"), pg_errors():
        async with app_store.transaction() as conn:
            wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
            tx_id, now = await _bare_transaction(conn, uid, wallet)
            await TransactionRepository.post(conn, tx_id, now, [
                Posting(house_wallet_id("clearing", "USD"), "USD", "debit", 1000),
                Posting(wallet, "USD", "credit", 999)])
            # The statement itself succeeded: the check is deferred to COMMIT.
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE transaction_id = $1", tx_id) == 2
    assert await counts(app_store) == before


async def test_postings_balanced_across_statements_are_accepted(app_store, service_store, cipher):
    uid = await funded_user(app_store, cipher)
    async with app_store.transaction() as conn:
        wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
        tx_id, now = await _bare_transaction(conn, uid, wallet)
        await conn.execute(
            "INSERT INTO ledger_entries VALUES ($1, $2, 1, $3, 'USD', 'debit', 1000, 'funding')",
            tx_id, now, house_wallet_id("clearing", "USD"))
        await conn.execute(
            "INSERT INTO ledger_entries VALUES ($1, $2, 2, $3, 'USD', 'credit', 1000, 'funding')", tx_id, now, wallet)
    async with service_store.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM ledger_pending") == 0


async def test_posting_balanced_in_one_currency_but_not_another_is_rejected(app_store, cipher):
    uid = await funded_user(app_store, cipher)
    with pytest.raises(InvalidData, match="unbalanced"), pg_errors():
        async with app_store.transaction() as conn:
            wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
            tx_id, now = await _bare_transaction(conn, uid, wallet)
            await TransactionRepository.post(conn, tx_id, now, [
                Posting(wallet, "USD", "debit", 1000),
                Posting(house_wallet_id("liquidity", "USD"), "USD", "credit", 1000),
                Posting(house_wallet_id("liquidity", "NGN"), "NGN", "debit", 5000),
                Posting(house_wallet_id("payout", "NGN"), "NGN", "credit", 4999)])


@pytest.mark.parametrize("amount", [0, -500])
async def test_negative_or_zero_amounts_are_rejected(svc, app_store, cipher, amount):
    uid = await funded_user(app_store, cipher)
    before = await counts(app_store)
    with pytest.raises(InvalidData, match="amount_minor"):
        await svc.create_payment(_payment(uid, amount), idempotency_key=f"neg-{uuid.uuid4().hex}")
    # The database refuses them too, whatever the code above it does.
    with pytest.raises(InvalidData, match="positive"), pg_errors():
        async with app_store.transaction() as conn:
            wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
            await _bare_transaction(conn, uid, wallet, amount=amount)
    with pytest.raises(InvalidData, match="positive"), pg_errors():
        async with app_store.transaction() as conn:
            wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
            tx_id, now = await _bare_transaction(conn, uid, wallet)
            await TransactionRepository.post(conn, tx_id, now, [
                Posting(wallet, "USD", "debit", amount), Posting(house_wallet_id("clearing", "USD"), "USD",
                                                                  "credit", amount)])
    assert await counts(app_store) == before


async def test_unknown_currency_is_rejected(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    before = await counts(app_store)
    with pytest.raises(InvalidData, match="unknown currency"):
        await svc.deposit({"user_id": uid, "amount_minor": 100, "currency": "XYZ"}, idempotency_key="dep-xyz-0001")
    with pytest.raises(InvalidData, match="unknown currency"), pg_errors():
        async with app_store.transaction() as conn:
            wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
            tx_id, now = uuid.uuid4(), datetime.now(UTC)
            await TransactionRepository.insert(conn, NewTransaction(
                id=tx_id, created_at=now, user_id=uid, kind="remittance", status="pending", wallet_id=wallet,
                amount_minor=100, currency="USD", corridor_id="US-NG", dest_amount_minor=100, dest_currency="XYZ",
                fx_rate=1, fx_rate_observed_at=now, reference="KRD-" + tx_id.hex[:12].upper()))
    assert await counts(app_store) == before


async def test_idempotent_retry_creates_nothing_twice(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    first = await svc.create_payment(_payment(uid), idempotency_key="retry-key-0001")
    before = await counts(app_store)
    again = await svc.create_payment(_payment(uid), idempotency_key="retry-key-0001")
    assert again.replayed and not first.replayed
    assert again.transaction_id == first.transaction_id and again.reference == first.reference
    assert await counts(app_store) == before


async def test_same_key_with_a_different_body_is_a_conflict(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    await svc.create_payment(_payment(uid), idempotency_key="conflict-key-01")
    before = await counts(app_store)
    with pytest.raises(Conflict, match="different request"):
        await svc.create_payment(_payment(uid, 20_000), idempotency_key="conflict-key-01")
    assert await counts(app_store) == before


async def test_concurrent_retries_with_one_key_make_one_payment(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    results = await asyncio.gather(*(svc.create_payment(_payment(uid), idempotency_key="concurrent-key-1")
                                     for _ in range(5)))
    assert len({r.transaction_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    async with app_store.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transactions WHERE user_id = $1 AND kind = 'remittance'",
                                   uid) == 1


async def test_refunds_never_exceed_the_original(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await svc.create_payment(_payment(uid), idempotency_key="refund-orig-01")
    part = await svc.refund({"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 6_000,
                             "reason": "recipient bank rejected part"}, idempotency_key="refund-part-01")
    assert part.kind == "refund" and part.refund_id is not None
    before = await counts(app_store)
    with pytest.raises(InvalidData, match="exceed the original"):
        await svc.refund({"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 4_001,
                          "reason": "again"}, idempotency_key="refund-over-01")
    assert await counts(app_store) == before
    # The database enforces it on its own, for a write that skips the service's check.
    with pytest.raises(InvalidData, match="exceed the original"), pg_errors():
        async with app_store.transaction() as conn:
            await conn.execute(
                "INSERT INTO refunds (id, transaction_id, transaction_created_at, amount_minor, currency, reason) "
                "VALUES ($1, $2, $3, 4001, 'USD', 'direct')", uuid.uuid4(), pay.transaction_id, pay.created_at)
    rest = await svc.refund({"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 4_000,
                             "reason": "rest"}, idempotency_key="refund-rest-01")
    assert rest.amount_minor == 4_000


async def test_concurrent_refunds_cannot_together_exceed_the_original(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await svc.create_payment(_payment(uid), idempotency_key="refund-race-00")
    outcomes = await asyncio.gather(*(svc.refund(
        {"user_id": uid, "transaction_id": pay.transaction_id, "amount_minor": 6_000, "reason": "race"},
        idempotency_key=f"refund-race-{i:02d}") for i in range(1, 4)), return_exceptions=True)
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(ok) == 1 and all(isinstance(o, InvalidData) for o in outcomes if isinstance(o, BaseException))


async def test_insufficient_funds_leave_nothing_behind(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher, amount_minor=5_000)
    before = await counts(app_store)
    with pytest.raises(InvalidData, match="insufficient funds"):
        await svc.create_payment(_payment(uid, 10_000), idempotency_key="too-much-0001")
    assert await counts(app_store) == before  # the idempotency key was released with the rest


async def test_fx_order_carries_the_rate_and_its_timestamp(svc, app_store, cipher):
    uid = await funded_user(app_store, cipher)
    res = await svc.fx_order({"user_id": uid, "sell_currency": "USD", "buy_currency": "NGN",
                              "sell_amount_minor": 10_000}, idempotency_key="fx-order-0001")
    async with app_store.connection() as conn:
        order = await conn.fetchrow("SELECT o.*, r.observed_at AS r_at FROM fx_orders o JOIN fx_rates r "
                                    "ON r.id = o.rate_id WHERE o.id = $1", res.fx_order_id)
    assert order["rate_observed_at"] == order["r_at"] and order["rate"] == res.fx_rate
    assert order["buy_amount_minor"] == res.dest_amount_minor
    with pytest.raises(InvalidData, match="times rate"), pg_errors():
        async with app_store.transaction() as conn:
            await conn.execute(
                "INSERT INTO fx_orders (id, user_id, sell_currency, sell_amount_minor, buy_currency, buy_amount_minor, "
                "rate, rate_id, rate_observed_at, created_at) VALUES ($1, $2, 'USD', 100, 'NGN', 999999, $3, $4, $5, "
                "now())", uuid.uuid4(), uid, order["rate"], order["rate_id"], order["rate_observed_at"])


async def test_status_machine_and_immutable_ledger(svc, app_store, service_store, cipher):
    uid = await funded_user(app_store, cipher)
    pay = await svc.create_payment(_payment(uid), idempotency_key="state-machine-1")
    with pytest.raises(InvalidData, match="status change"), pg_errors():
        async with app_store.transaction() as conn:
            await TransactionRepository.set_status(conn, pay.transaction_id, pay.created_at, "pending")
    with pytest.raises(InvalidData, match="cannot change"), pg_errors():  # the owner too (the app role may not)
        async with service_store.transaction() as conn:
            await conn.execute("UPDATE transactions SET amount_minor = 1 WHERE id = $1", pay.transaction_id)
    # Even the table owner cannot rewrite or delete a posting: corrections are new postings.
    for statement in ("UPDATE ledger_entries SET amount_minor = 1 WHERE transaction_id = $1",
                      "DELETE FROM ledger_entries WHERE transaction_id = $1"):
        with pytest.raises(InvalidData, match="immutable"), pg_errors():
            async with service_store.transaction() as conn:
                await conn.execute(statement, pay.transaction_id)
    async with app_store.transaction() as conn:
        await TransactionRepository.set_status(conn, pay.transaction_id, pay.created_at, "reversed")


async def test_wallet_balances_are_derivable_from_the_ledger(svc, app_store, service_store, cipher):
    uid = await add_user(app_store, cipher)
    await svc.deposit({"user_id": uid, "amount_minor": 77_000, "currency": "USD"}, idempotency_key="derive-dep-1")
    await svc.create_payment(_payment(uid, 20_000), idempotency_key="derive-pay-1")
    async with service_store.connection() as conn:
        assert await conn.fetch("SELECT * FROM wallet_balance_mismatches") == []
        # A balance changed behind the ledger's back shows up (only a superuser could do this).
        await conn.execute("UPDATE wallets SET balance_minor = balance_minor + 1 WHERE user_id = $1", uid)
        assert len(await conn.fetch("SELECT * FROM wallet_balance_mismatches")) == 1
        await conn.execute("UPDATE wallets SET balance_minor = balance_minor - 1 WHERE user_id = $1", uid)


async def test_entries_need_an_existing_transaction_and_transactions_are_never_deleted(svc, app_store,
                                                                                     service_store, cipher):
    uid = await funded_user(app_store, cipher)
    with pytest.raises(InvalidData, match="does not exist"), pg_errors():
        async with app_store.transaction() as conn:
            wallet = await WalletRepository.customer_wallet(conn, uid, "USD")
            await TransactionRepository.post(conn, uuid.uuid4(), datetime.now(UTC), [
                Posting(house_wallet_id("clearing", "USD"), "USD", "debit", 10), Posting(wallet, "USD", "credit", 10)])
    pay = await svc.create_payment(_payment(uid), idempotency_key="never-deleted-1")
    with pytest.raises(InvalidData, match="never deleted"), pg_errors():
        async with service_store.transaction() as conn:  # not even the owner
            await conn.execute("DELETE FROM transactions WHERE id = $1", pay.transaction_id)
