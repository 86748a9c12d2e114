"""Least privilege enforced by PostgreSQL: what each role can and cannot do."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from stores.postgres import AuditEntry, AuditRepository
from tests.integration.postgres.factories import add_user, funded_user


@pytest.fixture(scope="module")
async def user_id(app_store, cipher):
    return await funded_user(app_store, cipher)


async def _fails(store, sql: str, *args, errors=(asyncpg.InsufficientPrivilegeError,
                                               asyncpg.ReadOnlySQLTransactionError)) -> None:
    async with store.connection() as conn:
        with pytest.raises(errors):
            await conn.execute(sql, *args)


@pytest.mark.parametrize("sql", [
    "INSERT INTO corridors (id, source_country, dest_country, source_currency, dest_currency, min_amount_minor, "
    "max_amount_minor, fee_bps) VALUES ('FR-NG', 'FR', 'NG', 'EUR', 'NGN', 1, 2, 3)",
    "UPDATE transactions SET memo = 'x'",
    "DELETE FROM wallets",
    "INSERT INTO audit_logs (actor_subject, actor_role, action, decision) VALUES ('a', 'b', 'c', 'allowed')",
    "CREATE TABLE agent_made (x int)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "COPY (SELECT 1) TO '/tmp/agent_out.txt'",
])
async def test_agent_role_cannot_write_or_reach_the_server(agent_store, sql):
    await _fails(agent_store, sql)


async def test_agent_role_cannot_write_even_when_it_turns_read_only_off(agent_store):
    async with agent_store.connection() as conn:
        await conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM transactions")
        await conn.execute("RESET default_transaction_read_only")


async def test_agent_role_reads_only_what_tools_need(agent_store, user_id):
    async with agent_store.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users_public WHERE id = $1", user_id) == 1
        assert await conn.fetchval("SELECT count(*) > 0 FROM transactions") is True
        # Name/address ciphertexts only (for the redaction list); never DOB, phone or KYC numbers.
        assert await conn.fetchval("SELECT full_name_enc FROM users WHERE id = $1", user_id) is not None
        role = await conn.fetchrow("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                                   "WHERE rolname = current_user")
        assert not any(role.values())
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        assert await conn.fetchval("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'") != "0"
    for sql in ("SELECT date_of_birth_enc FROM users", "SELECT * FROM users", "SELECT * FROM kyc_records",
                "SELECT * FROM payment_methods", "SELECT * FROM sessions", "SELECT * FROM idempotency_keys"):
        await _fails(agent_store, sql, errors=(asyncpg.InsufficientPrivilegeError,))


async def test_app_role_cannot_rewrite_audit_logs(app_store):
    audit = AuditRepository(app_store)
    row_id = await audit.append(AuditEntry(actor_subject="svc", actor_role="service", action="payment",
                                           decision="allowed"))
    for sql in ("UPDATE audit_logs SET decision = 'denied' WHERE id = $1", "DELETE FROM audit_logs WHERE id = $1"):
        await _fails(app_store, sql, row_id)
    await _fails(app_store, "TRUNCATE audit_logs")
    async with app_store.connection() as conn:  # but it can read and insert (chained by the trigger)
        assert await conn.fetchval("SELECT decision FROM audit_logs WHERE id = $1", row_id) == "allowed"
        new_id = await conn.fetchval("INSERT INTO audit_logs (actor_subject, actor_role, action, decision, prev_hash, "
                                     "hash) VALUES ('svc', 'service', 'x', 'error', $1, $1) RETURNING id", "f" * 64)
        assert await conn.fetchval("SELECT prev_hash <> $2 FROM audit_logs WHERE id = $1", new_id, "f" * 64)


async def test_app_role_cannot_set_balances_or_delete_money(app_store, user_id):
    await _fails(app_store, "UPDATE wallets SET balance_minor = 1000000000 WHERE user_id = $1", user_id)
    await _fails(app_store, "DELETE FROM transactions WHERE user_id = $1", user_id)
    await _fails(app_store, "DELETE FROM ledger_entries")
    await _fails(app_store, "INSERT INTO wallets (id, user_id, kind, currency, balance_minor) "
                            "VALUES ($1, $2, 'customer', 'GBP', 100)", uuid.uuid4(), user_id)


async def test_log_role_may_only_append_audit(log_store):
    new_id = await AuditRepository(log_store).append(AuditEntry(
        actor_subject="agent-7", actor_role="support_agent", action="search_transactions", decision="allowed",
        rows_returned=3, redactions={"PHONE": 2}))
    assert new_id > 0
    for sql in ("SELECT * FROM audit_logs", "SELECT * FROM transactions", "SELECT * FROM users_public",
                "INSERT INTO audit_logs (actor_subject, actor_role, action, decision) VALUES ('a','b','c','denied')",
                "UPDATE audit_logs SET reason = 'x'", "CREATE TABLE log_made (x int)"):
        await _fails(log_store, sql)


async def test_public_cannot_call_internal_functions(agent_store):
    await _fails(agent_store, "SELECT audit_append('a', 'b', 'c', 'allowed')")
    await _fails(agent_store, "SELECT ensure_monthly_partitions('transactions'::regclass, DATE '2030-01-01', 1)")


async def test_plaintext_pii_is_refused_by_the_database(service_store, cipher):
    uid = await add_user(service_store, cipher)
    async with service_store.connection() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE users SET full_name_enc = 'Chinedu Okafor' WHERE id = $1", uid)
        stored = await conn.fetchval("SELECT full_name_enc || address_enc || date_of_birth_enc FROM users "
                                     "WHERE id = $1", uid)
    assert "Okafor" not in stored and "Lagos" not in stored and "1990" not in stored
