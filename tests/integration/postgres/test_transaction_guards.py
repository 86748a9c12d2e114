"""A transaction's identity, kind and links never change, so no posting or refund can be orphaned."""

from __future__ import annotations

import asyncpg
import pytest

from services.payments import PaymentService
from stores.errors import InvalidData
from stores.postgres.errors import pg_errors
from tests.integration.postgres.factories import add_rates, funded_user


@pytest.fixture(scope="module")
async def payment(app_store, cipher):
    await add_rates(app_store)
    uid = await funded_user(app_store, cipher)
    return await PaymentService(app_store).create_payment(
        {"user_id": uid, "corridor": "US-NG", "amount_minor": 10_000, "currency": "USD",
         "counterparty_name": "Adaeze Nwosu"}, idempotency_key=f"guard-{uid.hex[:12]}")


@pytest.mark.parametrize("change", [
    "id = gen_random_uuid()",
    "created_at = created_at + interval '40 days'",  # another partition: the ledger entries would be orphaned
    "kind = 'deposit'",
    "reference = 'KRD-ZZZZZZZZZZZZ'",
    "corridor_id = 'US-GH'",
    "fx_rate_observed_at = fx_rate_observed_at - interval '1 minute'",
    "fx_order_id = gen_random_uuid()",
    "payment_method_id = gen_random_uuid()",
])
async def test_identity_and_links_are_immutable_even_for_the_owner(service_store, payment, change):
    with pytest.raises(InvalidData, match="cannot change"), pg_errors():
        async with service_store.transaction() as conn:
            await conn.execute(f"UPDATE transactions SET {change} WHERE id = $1", payment.transaction_id)
    async with service_store.connection() as conn:
        row = await conn.fetchrow("SELECT kind, created_at, corridor_id FROM transactions WHERE id = $1",
                                  payment.transaction_id)
        entries = await conn.fetchval("SELECT count(*) FROM ledger_entries l JOIN transactions t ON "
                                      "t.id = l.transaction_id AND t.created_at = l.created_at WHERE t.id = $1",
                                      payment.transaction_id)
    assert tuple(row) == ("remittance", payment.created_at, "US-NG") and entries == 5


@pytest.mark.parametrize("column", ["kind", "amount_minor", "user_id", "created_at"])
async def test_service_role_may_update_only_lifecycle_columns(app_store, payment, column):
    async with app_store.connection() as conn:
        await conn.execute("UPDATE transactions SET memo = 'checked', description = 'school fees' WHERE id = $1",
                           payment.transaction_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"UPDATE transactions SET {column} = {column} WHERE id = $1", payment.transaction_id)
        assert await conn.fetchval("SELECT memo FROM transactions WHERE id = $1", payment.transaction_id) == "checked"
