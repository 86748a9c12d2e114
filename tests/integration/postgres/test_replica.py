"""Read replica: refuses writes, and sees what the primary commits."""

from __future__ import annotations

import asyncpg
import pytest

from stores.postgres import TransactionRepository
from stores.scope import RowScope
from tests.integration.postgres.conftest import wait_for_replica
from tests.integration.postgres.factories import add_user


async def test_writes_on_the_replica_pool_fail(service_store):
    assert service_store.replica is not None
    async with service_store.connection(replica=True) as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is True
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("INSERT INTO fx_rates (base_currency, quote_currency, rate, source, observed_at) "
                               "VALUES ('USD', 'NGN', 1, 'replica', now())")
    # Even with read-only turned off, a hot standby cannot write.
    async with service_store.connection(replica=True) as conn:
        await conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("DELETE FROM fx_rates")


async def test_a_row_written_on_the_primary_becomes_visible_on_the_replica(service_store, cipher):
    from services.payments import PaymentService

    uid = await add_user(service_store, cipher)
    res = await PaymentService(service_store).deposit({"user_id": uid, "amount_minor": 4_200, "currency": "USD"},
                                                      idempotency_key="replica-visible-1")
    seen = await wait_for_replica(service_store, "SELECT amount_minor FROM transactions WHERE id = $1",
                                  res.transaction_id)
    assert seen == 4_200
    detail = await TransactionRepository(service_store).get(RowScope.users(uid), res.transaction_id)
    assert detail.amount_minor == 4_200 and len(detail.entries) == 2
