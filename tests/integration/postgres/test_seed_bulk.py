"""The seeder's bulk fast path: it rejects a corrupted load, commits nothing, and a rerun repairs it."""

from __future__ import annotations

import asyncpg
import pytest

from kredete.seed import payments
from kredete.seed.payments import SeedConfig, seed_payments
from stores.errors import InvalidData
from tests.integration.postgres.conftest import drop_database, fresh_database

CONFIG = SeedConfig(users=300, seed=11, transactions_per_user=6)


@pytest.fixture
async def conn(pg_template):
    db = fresh_database(pg_template)
    c = await asyncpg.connect(db.service)
    yield c
    await c.close()
    drop_database(db.admin, db.db)


async def _looks_empty(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT count(*) FROM seed_progress") == 0
    for table in ("users", "transactions", "ledger_entries", "refunds", "fx_rates"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert await conn.fetchval("SELECT count(*) FROM wallets WHERE kind = 'customer'") == 0
    assert await conn.fetchval("SELECT count(*) FROM wallets WHERE balance_minor <> 0") == 0
    # The secondary indexes dropped for the load are back (the DDL rolled back with the rows).
    assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'transactions'") == 7
    assert await conn.fetchval("SHOW session_replication_role") == "origin"


@pytest.mark.parametrize("workers", [1, 2])
async def test_unbalanced_posting_is_rejected_and_nothing_is_committed(conn, cipher, monkeypatch, workers):
    original = payments._UserBuilder._post
    seen: set[int] = set()

    def corrupt(self, tx, lines):
        if self.index == 260 and self.index not in seen:  # user 260's first posting (second batch) is off by 1
            seen.add(self.index)
            wallet_id, currency, direction, amount, entry_type = lines[0]
            lines = [(wallet_id, currency, direction, amount + 1, entry_type), *lines[1:]]
        return original(self, tx, lines)

    monkeypatch.setattr(payments._UserBuilder, "_post", corrupt)
    with pytest.raises(InvalidData, match=r"1 unbalanced postings .*ledger_postings_balanced"):
        await seed_payments(conn, CONFIG, cipher, workers=workers)
    await _looks_empty(conn)

    monkeypatch.setattr(payments._UserBuilder, "_post", original)
    report = await seed_payments(conn, CONFIG, cipher, workers=workers)
    assert report.mode == "bulk" and report.users_loaded == 300
    assert await conn.fetch("SELECT * FROM wallet_balance_mismatches") == []


async def test_dangling_foreign_key_is_rejected(conn, cipher, monkeypatch):
    original = payments._UserBuilder._payment_method

    def dangling(self, main):
        pm = original(self, main)
        return pm if self.index != 5 else payments._uuid(self.rng)  # transactions point at a missing method

    monkeypatch.setattr(payments._UserBuilder, "_payment_method", dangling)
    with pytest.raises(InvalidData, match="transactions_payment_method_id_fkey"):
        await seed_payments(conn, CONFIG, cipher, workers=1)
    await _looks_empty(conn)


async def test_non_empty_database_takes_the_safe_path(conn, cipher):
    first = await seed_payments(conn, SeedConfig(users=100, seed=11, transactions_per_user=6), cipher)
    assert first.mode == "bulk"
    more = await seed_payments(conn, CONFIG, cipher)
    assert more.mode == "safe" and more.users_loaded == 200
    assert more.fallback_reason == "something of this run is already loaded"
    assert await conn.fetch("SELECT * FROM wallet_balance_mismatches") == []
    assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'transactions'") == 7


async def test_safe_path_still_enforces_the_triggers(conn, cipher, monkeypatch):
    original = payments._UserBuilder._post

    def corrupt(self, tx, lines):
        wallet_id, currency, direction, amount, entry_type = lines[0]
        return original(self, tx, [(wallet_id, currency, direction, amount + 1, entry_type), *lines[1:]])

    monkeypatch.setattr(payments._UserBuilder, "_post", corrupt)
    with pytest.raises(asyncpg.CheckViolationError, match="unbalanced posting"):
        await seed_payments(conn, CONFIG, cipher, bulk=False, workers=1)
    assert await conn.fetchval("SELECT count(*) FROM seed_progress WHERE run_key = $1", CONFIG.run_key) == 0
