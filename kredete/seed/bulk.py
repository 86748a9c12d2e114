"""Bulk fast path of the payments seeder, for an empty database (a fresh `kredete seed`, CI, the benchmark).

The whole load is ONE database transaction, run as a superuser with
`SET LOCAL session_replication_role = replica` (the session skips triggers and FK checks; CHECK,
NOT NULL and UNIQUE/PRIMARY KEY constraints still apply row by row), and with the secondary indexes of
the seeded tables dropped during the load and rebuilt (sorted, once) afterwards, in the same transaction.
Before COMMIT, set-based SQL proves everything the skipped triggers and foreign keys would have
enforced, then sets the wallet balances the ledger trigger would have kept:

- every declared foreign key of the seeded tables holds (an anti-join per constraint, read from
  pg_constraint, so a new FK is covered automatically);
- every ledger entry belongs to an existing transaction (ledger_after_insert);
- no debit hits a wallet that is not active (ledger_after_insert);
- every transaction's postings net to zero per currency (ledger_check_balanced);
- refunds: the original is an outgoing payment (remittance, card payment, payout), completed, in the
  same currency, and non-failed refunds never exceed it (refunds_guard);
- FX orders: buy = sell x rate within one minor unit, and the rate row quotes the order's pair
  (fx_orders_guard);
- customer wallets never go negative, and afterwards no wallet's balance differs from its ledger
  (wallet_balance_mismatches is empty);
- the corridor-day rollup the skipped transactions triggers would have kept is built from the loaded rows
  (`corridor_days_rebuild()`, migration 0015).

Any failure raises `InvalidData` and the transaction rolls back: nothing is committed, no
`seed_progress` row exists, and the database is as empty as before, so a rerun starts over. An
interruption (crash, Ctrl-C) also rolls everything back.
"""

from __future__ import annotations

from stores.errors import InvalidData
from stores.postgres.bulk_load import Connection
from stores.postgres.models import REFUNDABLE_KINDS

#: Tables that must be empty for the fast path (wallets: no customer wallet yet).
EMPTY_TABLES = ("users", "transactions", "ledger_entries", "refunds", "fx_orders", "stablecoin_transfers",
                "fx_rates", "settlements", "hedging_positions", "liquidity_pools")


async def eligible(conn: Connection, run_key: str) -> str | None:
    """None when the fast path can be used, else the reason it cannot."""
    if await conn.fetchval("SELECT current_setting('is_superuser')") != "on":
        return "not a superuser (session_replication_role needs one)"
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM seed_progress)"):
        return "seed_progress is not empty"
    for table in EMPTY_TABLES:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            return f"{table} is not empty"
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM wallets WHERE kind = 'customer')"):
        return "wallets is not empty"
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM wallets WHERE balance_minor <> 0)"):
        return "a house wallet has a balance"
    return None


async def begin(conn: Connection, tables: tuple[str, ...]) -> list[str]:
    """Inside the load transaction: skip triggers/FKs, drop secondary indexes; returns their definitions."""
    await conn.execute("SET LOCAL session_replication_role = replica")
    await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    rows = await conn.fetch(
        """SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
           FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relname = ANY($1::text[]) AND t.relnamespace = 'public'::regnamespace
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
             AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
           ORDER BY 1""", list(tables))
    for r in rows:
        await conn.execute(f"DROP INDEX {r['name']}")
    return [r["def"].replace(" ON ONLY ", " ON ", 1) for r in rows]


async def rebuild_indexes(conn: Connection, definitions: list[str]) -> None:
    """Recreate the dropped indexes (unique ones re-prove their uniqueness while building)."""
    for d in definitions:
        await conn.execute(d)


async def _foreign_key_checks(conn: Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    """(constraint, anti-join counting violating rows) for every FK declared on the seeded tables."""
    rows = await conn.fetch(
        """SELECT c.conname, c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent,
                  array(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
                  array(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) AS refs
           FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
           WHERE c.contype = 'f' AND c.conparentid = 0 AND t.relname = ANY($1::text[])
             AND t.relnamespace = 'public'::regnamespace
           ORDER BY 1""", list(tables))
    out = []
    for r in rows:
        not_null = " AND ".join(f"c.{col} IS NOT NULL" for col in r["cols"])
        match = " AND ".join(f"p.{ref} = c.{col}" for col, ref in zip(r["cols"], r["refs"], strict=True))
        out.append((r["conname"], f"SELECT count(*) FROM {r['child']} c WHERE {not_null} AND NOT EXISTS "
                                  f"(SELECT 1 FROM {r['parent']} p WHERE {match})"))
    return out


#: What the skipped triggers enforce, as queries counting violations (name, query, message).
TRIGGER_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("ledger_entries_transaction_fkey",
     "SELECT count(*) FROM (SELECT DISTINCT transaction_id, created_at FROM ledger_entries) e WHERE NOT EXISTS "
     "(SELECT 1 FROM transactions t WHERE t.id = e.transaction_id AND t.created_at = e.created_at)",
     "ledger entries for transactions that do not exist"),
    ("ledger_entries_wallet_active",
     "SELECT count(*) FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id "
     "WHERE w.status <> 'active' AND e.direction = 'debit'",
     "debits of a wallet that is not active"),
    ("ledger_postings_balanced",
     "SELECT count(*) FROM (SELECT 1 FROM ledger_entries GROUP BY transaction_id, currency "
     "HAVING sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) <> 0) x",
     "unbalanced postings (a transaction that does not net to zero in a currency)"),
    ("refunds_original_refundable",
     "SELECT count(*) FROM refunds r JOIN transactions t ON t.id = r.transaction_id "
     "AND t.created_at = r.transaction_created_at WHERE t.kind NOT IN ("
     + ", ".join(f"'{k}'" for k in sorted(REFUNDABLE_KINDS)) + ")",
     "refunds of a transaction that is not an outgoing payment"),
    ("refunds_original_completed",
     "SELECT count(*) FROM refunds r JOIN transactions t ON t.id = r.transaction_id "
     "AND t.created_at = r.transaction_created_at WHERE r.status <> 'failed' AND t.status <> 'completed'",
     "refunds of a transaction that is not completed"),
    ("refunds_currency_matches",
     "SELECT count(*) FROM refunds r JOIN transactions t ON t.id = r.transaction_id "
     "AND t.created_at = r.transaction_created_at WHERE r.status <> 'failed' AND r.currency <> t.currency",
     "refunds in another currency than the original"),
    ("refunds_not_exceeding_original",
     "SELECT count(*) FROM (SELECT transaction_id, transaction_created_at, sum(amount_minor) AS refunded "
     "FROM refunds WHERE status <> 'failed' GROUP BY 1, 2) s JOIN transactions t ON t.id = s.transaction_id "
     "AND t.created_at = s.transaction_created_at WHERE s.refunded > t.amount_minor",
     "refunds exceeding the original amount"),
    ("fx_orders_amounts_match_rate",
     "SELECT count(*) FROM fx_orders o JOIN currencies s ON s.code = o.sell_currency "
     "JOIN currencies b ON b.code = o.buy_currency WHERE abs(o.buy_amount_minor - "
     "o.sell_amount_minor * o.rate * power(10::numeric, b.exponent - s.exponent)) > 1",
     "FX orders whose buy amount is not sell amount x rate"),
    ("fx_orders_rate_pair",
     "SELECT count(*) FROM fx_orders o JOIN fx_rates r ON r.id = o.rate_id AND r.observed_at = o.rate_observed_at "
     "WHERE r.base_currency <> o.sell_currency OR r.quote_currency <> o.buy_currency",
     "FX orders whose rate row quotes another currency pair"),
    ("wallets_customer_non_negative",
     "SELECT count(*) FROM wallets w JOIN (SELECT wallet_id, sum(CASE WHEN direction = 'credit' THEN amount_minor "
     "ELSE -amount_minor END) AS net FROM ledger_entries GROUP BY wallet_id) l ON l.wallet_id = w.id "
     "WHERE w.kind = 'customer' AND w.balance_minor + l.net < 0",
     "customer wallets whose ledger goes negative"),
)

SET_BALANCES = """
    UPDATE wallets w SET balance_minor = w.balance_minor + d.delta
    FROM (SELECT wallet_id, sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE -amount_minor END) AS delta
          FROM ledger_entries GROUP BY wallet_id) d
    WHERE w.id = d.wallet_id AND d.delta <> 0"""


async def validate_and_finish(conn: Connection, tables: tuple[str, ...]) -> dict[str, int]:
    """Prove the load sound (see the module docstring), then set wallet balances; raise InvalidData if not.

    Returns the number of checks run per kind. Must run inside the load transaction, after the indexes
    are rebuilt (the anti-joins use them).
    """
    await conn.execute("ANALYZE " + ", ".join(tables))
    failures: list[str] = []
    fks = await _foreign_key_checks(conn, tables)
    for name, query in fks:
        n = await conn.fetchval(query)
        if n:
            failures.append(f"{n} row(s) violate foreign key {name}")
    for name, query, message in TRIGGER_CHECKS:
        n = await conn.fetchval(query)
        if n:
            failures.append(f"{n} {message} ({name})")
    if failures:
        raise InvalidData("seed bulk load rejected, nothing was committed: " + "; ".join(failures), store="seed")
    await conn.execute(SET_BALANCES)
    await conn.execute("SELECT corridor_days_rebuild()")
    mismatches = await conn.fetchval("SELECT count(*) FROM wallet_balance_mismatches")
    if mismatches:
        raise InvalidData(f"seed bulk load rejected, nothing was committed: {mismatches} wallet balance(s) differ "
                          "from the ledger", store="seed")
    return {"foreign_keys": len(fks), "trigger_rules": len(TRIGGER_CHECKS) + 1}
