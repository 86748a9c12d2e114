"""Wallets: scoped balances (kept by the ledger in the database), house wallets, balance verification."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from stores.errors import NotFound
from stores.postgres.base import Params, Repository, scope_clause
from stores.postgres.errors import pg_errors
from stores.postgres.models import WalletBalance
from stores.scope import RowScope


def house_wallet_id(kind: str, currency: str) -> UUID:
    """Stable id of a house wallet created by the migrations (md5('house:<kind>:<currency>'))."""
    import hashlib

    return UUID(hashlib.md5(f"house:{kind}:{currency}".encode(), usedforsecurity=False).hexdigest())


class WalletRepository(Repository):
    async def balances(self, scope: RowScope, user_id: UUID) -> list[WalletBalance]:
        """The user's customer wallets; empty when the user has none or is outside the scope."""
        p = Params()
        where = f"w.user_id = {p.add(user_id, 'uuid')} AND {scope_clause(scope, 'w.user_id', p)}"
        async with self._read() as conn:
            rows = await conn.fetch(
                "SELECT w.id AS wallet_id, w.currency, c.exponent, w.balance_minor, w.status, w.updated_at "
                f"FROM wallets w JOIN currencies c ON c.code = w.currency WHERE {where} AND w.kind = 'customer' "
                "ORDER BY w.currency", *p.values)
        return [WalletBalance.model_validate(dict(r)) for r in rows]

    async def mismatches(self) -> list[dict[str, object]]:
        """Wallets whose stored balance differs from their ledger (empty when the books are right)."""
        async with self._read(replica=False) as conn:
            rows = await conn.fetch("SELECT * FROM wallet_balance_mismatches ORDER BY wallet_id LIMIT 100")
        return [dict(r) for r in rows]

    async def mismatch_count(self) -> int:
        """How many wallets differ from their ledger (`mismatches` lists at most 100 of them)."""
        async with self._read(replica=False) as conn:
            return int(await conn.fetchval("SELECT count(*) FROM wallet_balance_mismatches"))

    # --- used inside the payment service's transaction ---

    @staticmethod
    async def customer_wallet(conn: asyncpg.Connection, user_id: UUID, currency: str, *,
                              create: bool = False) -> UUID:
        with pg_errors():
            wid = await conn.fetchval(
                "SELECT id FROM wallets WHERE user_id = $1 AND currency = $2 AND kind = 'customer'", user_id, currency)
            if wid is None and create:
                wid = await conn.fetchval(
                    "INSERT INTO wallets (id, user_id, kind, currency) VALUES (gen_random_uuid(), $1, 'customer', $2) "
                    "ON CONFLICT (user_id, currency) WHERE kind = 'customer' DO UPDATE SET label = wallets.label "
                    "RETURNING id", user_id, currency)
        if wid is None:
            raise NotFound(f"no {currency} wallet for this user", store="postgres")
        return wid

    @staticmethod
    async def currency_exponents(conn: asyncpg.Connection) -> dict[str, int]:
        rows = await conn.fetch("SELECT code, exponent FROM currencies")
        return {r["code"]: r["exponent"] for r in rows}
