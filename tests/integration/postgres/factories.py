"""Small builders of valid rows for the PostgreSQL tests (users with encrypted PII, FX rates, funds)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.payments import PaymentService
from stores.crypto import FieldCipher
from stores.postgres import PostgresStore
from stores.postgres.users import pii_context

RATES = {("USD", "NGN"): Decimal("1530.25"), ("GBP", "NGN"): Decimal("1925.10"), ("USD", "GHS"): Decimal("15.42"),
         ("GBP", "GHS"): Decimal("19.35"), ("USD", "KES"): Decimal("129.15"), ("GBP", "KES"): Decimal("162.40"),
         ("EUR", "NGN"): Decimal("1640.00"), ("USD", "USDC"): Decimal("1.0000"), ("USDC", "NGN"): Decimal("1528.90")}


async def add_user(store: PostgresStore, cipher: FieldCipher, *, country: str = "NG", home_currency: str = "NGN",
                   name: str = "Chinedu Okafor", address: str = "12 Adeola Odeku Street\nVictoria Island, Lagos",
                   email: str | None = None, phone: str | None = None) -> uuid.UUID:
    uid = uuid.uuid4()
    email = email or f"{uid.hex[:10]}@example.com"
    phone = phone or f"+23480{uid.int % 10**8:08d}"

    def enc(col: str, value: str) -> str:
        return cipher.encrypt(value, pii_context(col, uid))

    async with store.connection() as conn:
        await conn.execute(
            "INSERT INTO users (id, status, country, home_currency, kyc_level, full_name_enc, email_enc, email_bidx, "
            "phone_enc, phone_bidx, date_of_birth_enc, address_enc) VALUES ($1, 'active', $2, $3, 'full', $4, $5, $6, "
            "$7, $8, $9, $10)",
            uid, country, home_currency, enc("full_name", name), enc("email", email),
            cipher.blind_index(email, "users.email", "email"), enc("phone", phone),
            cipher.blind_index(phone, "users.phone", "phone"),
            enc("date_of_birth", "1990-04-12"), enc("address", address))
    return uid


async def add_rates(store: PostgresStore, *, at: datetime | None = None) -> None:
    at = at or datetime.now(UTC) - timedelta(minutes=5)
    async with store.connection() as conn:
        for (base, quote), rate in RATES.items():
            await conn.execute(
                "INSERT INTO fx_rates (base_currency, quote_currency, rate, source, observed_at) "
                "VALUES ($1, $2, $3, 'test', $4) ON CONFLICT DO NOTHING", base, quote, rate, at)


async def funded_user(store: PostgresStore, cipher: FieldCipher, amount_minor: int = 500_000, currency: str = "USD",
                      **kw) -> uuid.UUID:
    uid = await add_user(store, cipher, **kw)
    await PaymentService(store).deposit({"user_id": uid, "amount_minor": amount_minor, "currency": currency},
                                        idempotency_key=f"fund-{uid.hex}")
    return uid


async def counts(store: PostgresStore) -> dict[str, int]:
    """Row counts of the tables a business operation writes (to prove nothing was half-written)."""
    async with store.connection() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in (
            "transactions", "ledger_entries", "refunds", "fx_orders", "idempotency_keys", "wallets")}
