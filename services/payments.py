"""PaymentService: deposits, cross-border payments, refunds and FX orders.

Each operation is one database transaction: the idempotency key, the transaction row, its balanced
ledger posting and any refund/FX row commit together or not at all. The database re-checks what
matters (balance per currency at COMMIT, funds, over-refund, rate freshness), so a bug here cannot
corrupt the books; the checks here exist to give callers clear errors early.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stores.errors import InvalidData
from stores.postgres.errors import pg_errors
from stores.postgres.fx import FxRepository
from stores.postgres.idempotency import IdempotencyRepository, request_hash
from stores.postgres.models import REFUNDABLE_KINDS
from stores.postgres.pool import PostgresStore
from stores.postgres.transactions import NewTransaction, Posting, TransactionRepository
from stores.postgres.wallets import WalletRepository, house_wallet_id

M = TypeVar("M", bound=BaseModel)
MAX_RATE_AGE = timedelta(days=1)
_CODE = r"^[A-Z]{3,4}$"


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DepositRequest(_Request):
    user_id: UUID
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str = Field(pattern=_CODE)
    payment_method_id: UUID | None = None
    description: str | None = Field(None, max_length=1000)


class PaymentRequest(_Request):
    """Send `amount_minor` of the corridor's source currency to a recipient in the destination country."""

    user_id: UUID
    corridor: str = Field(pattern=r"^[A-Z]{2}-[A-Z]{2}$")
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str = Field(pattern=_CODE)
    counterparty_name: str = Field(min_length=1, max_length=200)
    counterparty_reference: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=1000)
    memo: str | None = Field(None, max_length=1000)


class RefundRequest(_Request):
    user_id: UUID
    transaction_id: UUID
    amount_minor: int = Field(gt=0, le=10**15)
    reason: str = Field(min_length=1, max_length=500)
    #: The original's created_at, when the caller has it: the lookup then reads one partition.
    transaction_created_at: datetime | None = None

    def body(self) -> dict[str, Any]:
        """The idempotency body; without an unset created_at, so requests hash as they did before it existed."""
        return self.model_dump(mode="json", exclude={"transaction_created_at"} if
                               self.transaction_created_at is None else None)


class FxOrderRequest(_Request):
    user_id: UUID
    sell_currency: str = Field(pattern=_CODE)
    buy_currency: str = Field(pattern=_CODE)
    sell_amount_minor: int = Field(gt=0, le=10**15)
    markup_bps: int = Field(50, ge=0, le=1000)


class OperationResult(BaseModel):
    """What an operation made; `replayed` is True when an idempotent retry returned the original."""

    transaction_id: UUID
    reference: str
    status: str
    kind: str
    amount_minor: int
    currency: str
    fee_minor: int
    dest_amount_minor: int | None
    dest_currency: str | None
    fx_rate: Decimal | None
    created_at: datetime
    replayed: bool = False
    refund_id: UUID | None = None
    fx_order_id: UUID | None = None


def _validate(model: type[M], data: M | dict[str, Any]) -> M:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "request"
        raise InvalidData(f"invalid {field}: {first['msg']}", store="payments") from exc


def new_reference(id_: UUID) -> str:
    """Public reference, e.g. KRD-7Q2M4XK9ABCD, from the transaction id."""
    return "KRD-" + base64.b32encode(id_.bytes).decode()[:12]


def convert(amount_minor: int, rate: Decimal, from_exp: int, to_exp: int) -> int:
    """Minor units of one currency into another at `rate` (major per major), rounded down."""
    value = Decimal(amount_minor) * rate * Decimal(10) ** (to_exp - from_exp)
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


class PaymentService:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.transactions = TransactionRepository(store, replica_reads=False)

    async def _replay(self, conn, resource_id: UUID, *, operation: str) -> OperationResult:
        if operation == "refund":
            row = await conn.fetchrow("SELECT id, refund_transaction_id, refund_transaction_created_at FROM refunds "
                                      "WHERE id = $1", resource_id)
            tx = await TransactionRepository.lock(conn, row["refund_transaction_id"],
                                                  created_at=row["refund_transaction_created_at"])
            return self._result(tx, replayed=True, refund_id=row["id"])
        if operation == "fx_order":
            # fx_order() gives the order and its transaction one timestamp: one partition to read.
            at = await conn.fetchval("SELECT created_at FROM fx_orders WHERE id = $1", resource_id)
            tx_id = await conn.fetchval("SELECT id FROM transactions WHERE fx_order_id = $1 AND created_at = $2",
                                        resource_id, at)
            return self._result(await TransactionRepository.lock(conn, tx_id, created_at=at), replayed=True)
        return self._result(await TransactionRepository.lock(conn, resource_id), replayed=True)

    @staticmethod
    def _result(row, **extra: Any) -> OperationResult:
        return OperationResult.model_validate({**{k: row[k] for k in (
            "status", "kind", "amount_minor", "currency", "fee_minor", "dest_amount_minor", "dest_currency",
            "fx_rate", "created_at", "reference", "fx_order_id")}, "transaction_id": row["id"], **extra})

    async def deposit(self, request: DepositRequest | dict[str, Any], *, idempotency_key: str) -> OperationResult:
        """Fund the user's wallet (created if missing) from the clearing account."""
        req = _validate(DepositRequest, request)
        tx_id, now = uuid4(), datetime.now(UTC)
        with pg_errors():
            async with self.store.transaction() as conn:
                await FxRepository.exponent_in(conn, req.currency)
                claim = await IdempotencyRepository.claim(
                    conn, user_id=req.user_id, key=idempotency_key, operation="deposit",
                    body_hash=request_hash("deposit", req.model_dump(mode="json")), resource_id=tx_id)
                if claim.replay:
                    return await self._replay(conn, claim.resource_id, operation="deposit")
                wallet = await WalletRepository.customer_wallet(conn, req.user_id, req.currency, create=True)
                tx = NewTransaction(id=tx_id, created_at=now, user_id=req.user_id, kind="deposit", status="completed",
                                    wallet_id=wallet, amount_minor=req.amount_minor, currency=req.currency,
                                    reference=new_reference(tx_id), payment_method_id=req.payment_method_id,
                                    description=req.description, completed_at=now)
                await TransactionRepository.insert(conn, tx)
                await TransactionRepository.post(conn, tx_id, now, [
                    Posting(house_wallet_id("clearing", req.currency), req.currency, "debit", req.amount_minor,
                            "funding"),
                    Posting(wallet, req.currency, "credit", req.amount_minor, "funding")])
                return self._result(await TransactionRepository.lock(conn, tx_id, created_at=now))

    async def create_payment(self, request: PaymentRequest | dict[str, Any], *,
                             idempotency_key: str) -> OperationResult:
        """Cross-border payment through a corridor: debit amount + fee, pay out the converted amount."""
        req = _validate(PaymentRequest, request)
        tx_id, now = uuid4(), datetime.now(UTC)
        with pg_errors():
            async with self.store.transaction() as conn:
                src_exp = await FxRepository.exponent_in(conn, req.currency)
                claim = await IdempotencyRepository.claim(
                    conn, user_id=req.user_id, key=idempotency_key, operation="payment",
                    body_hash=request_hash("payment", req.model_dump(mode="json")), resource_id=tx_id)
                if claim.replay:
                    return await self._replay(conn, claim.resource_id, operation="payment")
                corridor = await FxRepository.corridor_in(conn, req.corridor)
                if req.currency != corridor.source_currency:
                    raise InvalidData(f"corridor {corridor.id} sends {corridor.source_currency}", store="payments")
                if not corridor.min_amount_minor <= req.amount_minor <= corridor.max_amount_minor:
                    raise InvalidData("amount is outside the corridor's limits", store="payments")
                dst, dst_exp = corridor.dest_currency, await FxRepository.exponent_in(conn, corridor.dest_currency)
                rate = await FxRepository.latest_rate_in(conn, req.currency, dst, at=now)
                if now - rate.observed_at > MAX_RATE_AGE:
                    raise InvalidData(f"the {req.currency}/{dst} rate is stale", store="payments")
                fee = corridor.fee_fixed_minor + math.ceil(req.amount_minor * corridor.fee_bps / 10_000)
                dest_amount = convert(req.amount_minor, rate.rate, src_exp, dst_exp)
                wallet = await WalletRepository.customer_wallet(conn, req.user_id, req.currency)
                tx = NewTransaction(
                    id=tx_id, created_at=now, user_id=req.user_id, kind="remittance", status="completed",
                    wallet_id=wallet, amount_minor=req.amount_minor, currency=req.currency, fee_minor=fee,
                    corridor_id=corridor.id, dest_amount_minor=dest_amount, dest_currency=dst, fx_rate=rate.rate,
                    fx_rate_observed_at=rate.observed_at, reference=new_reference(tx_id),
                    counterparty_name=req.counterparty_name, counterparty_reference=req.counterparty_reference,
                    description=req.description, memo=req.memo, completed_at=now)
                await TransactionRepository.insert(conn, tx)
                postings = [Posting(wallet, req.currency, "debit", req.amount_minor + fee),
                            Posting(house_wallet_id("liquidity", req.currency), req.currency, "credit",
                                    req.amount_minor)]
                if fee:
                    postings.append(Posting(house_wallet_id("fees", req.currency), req.currency, "credit", fee, "fee"))
                postings += [Posting(house_wallet_id("liquidity", dst), dst, "debit", dest_amount, "fx"),
                             Posting(house_wallet_id("payout", dst), dst, "credit", dest_amount, "payout")]
                await TransactionRepository.post(conn, tx_id, now, postings)
                return self._result(await TransactionRepository.lock(conn, tx_id, created_at=now))

    async def refund(self, request: RefundRequest | dict[str, Any], *, idempotency_key: str) -> OperationResult:
        """Give back (part of) a completed outgoing payment's amount to the wallet it came from."""
        req = _validate(RefundRequest, request)
        refund_id, tx_id, now = uuid4(), uuid4(), datetime.now(UTC)
        with pg_errors():
            async with self.store.transaction() as conn:
                claim = await IdempotencyRepository.claim(
                    conn, user_id=req.user_id, key=idempotency_key, operation="refund",
                    body_hash=request_hash("refund", req.body()), resource_id=refund_id)
                if claim.replay:
                    return await self._replay(conn, claim.resource_id, operation="refund")
                orig = await TransactionRepository.lock(conn, req.transaction_id, req.user_id,
                                                        created_at=req.transaction_created_at)
                if orig["kind"] not in REFUNDABLE_KINDS:
                    raise InvalidData(f"only an outgoing payment (remittance, card payment, payout) can be "
                                      f"refunded, not a {orig['kind'].replace('_', ' ')}", store="payments")
                already = await conn.fetchval(
                    "SELECT COALESCE(sum(amount_minor), 0) FROM refunds WHERE transaction_id = $1 "
                    "AND status <> 'failed'", orig["id"])
                if already + req.amount_minor > orig["amount_minor"]:
                    raise InvalidData("refunds would exceed the original amount", store="payments")
                cur = orig["currency"]
                tx = NewTransaction(id=tx_id, created_at=now, user_id=req.user_id, kind="refund",
                                    status="completed", wallet_id=orig["wallet_id"], amount_minor=req.amount_minor,
                                    currency=cur, reference=new_reference(tx_id),
                                    description=f"Refund of {orig['reference']}", completed_at=now)
                await TransactionRepository.insert(conn, tx)
                await TransactionRepository.post(conn, tx_id, now, [
                    Posting(house_wallet_id("liquidity", cur), cur, "debit", req.amount_minor, "refund"),
                    Posting(orig["wallet_id"], cur, "credit", req.amount_minor, "refund")])
                # The database re-checks the total under a lock on the original (refunds_guard).
                await conn.execute(
                    "INSERT INTO refunds (id, transaction_id, transaction_created_at, refund_transaction_id, "
                    "refund_transaction_created_at, amount_minor, currency, reason, status, created_at, completed_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'completed', $5, $5)",
                    refund_id, orig["id"], orig["created_at"], tx_id, now, req.amount_minor, cur, req.reason)
                return self._result(await TransactionRepository.lock(conn, tx_id, created_at=now), refund_id=refund_id)

    async def fx_order(self, request: FxOrderRequest | dict[str, Any], *, idempotency_key: str) -> OperationResult:
        """Convert between two of the user's wallets at the latest rate less a markup; the order keeps the
        rate used and the rate's timestamp."""
        req = _validate(FxOrderRequest, request)
        if req.sell_currency == req.buy_currency:
            raise InvalidData("sell and buy currencies must differ", store="payments")
        order_id, tx_id, now = uuid4(), uuid4(), datetime.now(UTC)
        with pg_errors():
            async with self.store.transaction() as conn:
                sell_exp = await FxRepository.exponent_in(conn, req.sell_currency)
                buy_exp = await FxRepository.exponent_in(conn, req.buy_currency)
                claim = await IdempotencyRepository.claim(
                    conn, user_id=req.user_id, key=idempotency_key, operation="fx_order",
                    body_hash=request_hash("fx_order", req.model_dump(mode="json")), resource_id=order_id)
                if claim.replay:
                    return await self._replay(conn, claim.resource_id, operation="fx_order")
                mid = await FxRepository.latest_rate_in(conn, req.sell_currency, req.buy_currency, at=now)
                if now - mid.observed_at > MAX_RATE_AGE:
                    raise InvalidData(f"the {req.sell_currency}/{req.buy_currency} rate is stale", store="payments")
                applied = (mid.rate * (Decimal(10_000 - req.markup_bps) / 10_000)).quantize(Decimal("1e-12"))
                buy = convert(req.sell_amount_minor, applied, sell_exp, buy_exp)
                if buy <= 0:
                    raise InvalidData("amount too small to convert", store="payments")
                sell_wallet = await WalletRepository.customer_wallet(conn, req.user_id, req.sell_currency)
                buy_wallet = await WalletRepository.customer_wallet(conn, req.user_id, req.buy_currency, create=True)
                await conn.execute(
                    "INSERT INTO fx_orders (id, user_id, sell_currency, sell_amount_minor, buy_currency, "
                    "buy_amount_minor, rate, rate_id, rate_observed_at, markup_bps, status, created_at, executed_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'executed', $11, $11)",
                    order_id, req.user_id, req.sell_currency, req.sell_amount_minor, req.buy_currency, buy, applied,
                    mid.id, mid.observed_at, req.markup_bps, now)
                tx = NewTransaction(
                    id=tx_id, created_at=now, user_id=req.user_id, kind="fx_conversion", status="completed",
                    wallet_id=sell_wallet, amount_minor=req.sell_amount_minor, currency=req.sell_currency,
                    dest_amount_minor=buy, dest_currency=req.buy_currency, fx_rate=applied,
                    fx_rate_observed_at=mid.observed_at, fx_order_id=order_id, reference=new_reference(tx_id),
                    completed_at=now)
                await TransactionRepository.insert(conn, tx)
                await TransactionRepository.post(conn, tx_id, now, [
                    Posting(sell_wallet, req.sell_currency, "debit", req.sell_amount_minor),
                    Posting(house_wallet_id("liquidity", req.sell_currency), req.sell_currency, "credit",
                            req.sell_amount_minor),
                    Posting(house_wallet_id("liquidity", req.buy_currency), req.buy_currency, "debit", buy, "fx"),
                    Posting(buy_wallet, req.buy_currency, "credit", buy, "fx")])
                return self._result(await TransactionRepository.lock(conn, tx_id, created_at=now),
                                    fx_order_id=order_id)
