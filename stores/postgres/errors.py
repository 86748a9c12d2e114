"""Translate PostgreSQL errors into the typed store errors, with messages safe to show a caller.

The database names the rule that failed (constraint name); the message comes from this table, never
from the server text (which can quote values or SQL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg

from stores.errors import Conflict, InvalidData, StoreError, StoreUnavailable

_STORE = "postgres"

#: constraint name -> what the caller did wrong.
CONSTRAINT_MESSAGES: dict[str, str] = {
    "ledger_postings_balanced": "unbalanced posting: debits and credits differ in at least one currency",
    "ledger_entries_immutable": "ledger entries are immutable; post a correcting transaction",
    "ledger_entries_wallet_active": "a frozen or closed wallet cannot be debited",
    "ledger_entries_amount_positive": "ledger amounts must be positive minor units",
    "ledger_entries_wallet_fkey": "ledger entry wallet does not exist or does not hold that currency",
    "ledger_entries_transaction_fkey": "ledger entry for a transaction that does not exist",
    "transactions_no_delete": "transactions are never deleted; reverse them instead",
    "wallets_customer_non_negative": "insufficient funds",
    "transactions_amount_positive": "amount must be a positive number of minor units",
    "transactions_fee_non_negative": "fee cannot be negative",
    "transactions_dest_amount_positive": "destination amount must be positive",
    "transactions_wallet_fkey": "wallet does not exist, does not belong to the user or does not hold that currency",
    "transactions_status_transition": "that transaction status change is not allowed",
    "transactions_money_immutable": "money fields of a transaction cannot change",
    "transactions_identity_immutable": "the id, time, kind, reference and links of a transaction cannot change",
    "transactions_fx_carries_rate": "a cross-currency transaction must carry its FX rate and the rate's timestamp",
    "transactions_dest_currency_fkey": "unknown currency",
    "refunds_not_exceeding_original": "refunds would exceed the original amount",
    "refunds_original_completed": "only a completed transaction can be refunded",
    "refunds_original_refundable": "only an outgoing payment (remittance, card payment, payout) can be refunded",
    "refunds_currency_matches": "a refund must be in the currency of the original transaction",
    "refunds_amount_positive": "refund amount must be positive",
    "refunds_immutable": "the original, amount, currency and refund transaction of a refund cannot change",
    "refunds_status_transition": "that refund status change is not allowed (pending -> completed or failed only)",
    "refunds_credited_cannot_fail": "a refund whose credit is posted cannot fail; reverse its transaction instead",
    "fx_orders_amounts_match_rate": "buy amount does not match sell amount times rate",
    "fx_orders_rate_fresh": "the FX rate is older than the order allows",
    "fx_orders_rate_pair": "the FX rate row is for another currency pair than the order",
    "fx_orders_status_transition": "that FX order status change is not allowed",
    "settlements_status_transition": "that settlement status change is not allowed",
    "stablecoin_transfers_status_transition": "that stablecoin transfer status change is not allowed",
    "kyc_records_status_transition": "that KYC record status change is not allowed",
    "audit_logs_append_only": "audit logs are append-only",
}


def is_outage(exc: BaseException) -> bool:
    """Whether an error means the server cannot serve (down, restarting, refusing connections, out of
    resources), as opposed to an answer about this statement. A statement timeout is an answer: the query
    was slow, the server is there."""
    if isinstance(exc, asyncpg.QueryCanceledError):
        return False
    if isinstance(exc, StoreUnavailable):
        return True
    return isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                            asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError))


def _by_suffix(name: str) -> str | None:
    if name.endswith("currency_fkey") or name.endswith("_currency_fkey1"):
        return "unknown currency"
    return None


def translate(exc: asyncpg.PostgresError) -> StoreError:
    """The typed error for a server error; the original stays chained as the cause."""
    name = getattr(exc, "constraint_name", None) or ""
    message = CONSTRAINT_MESSAGES.get(name) or _by_suffix(name)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(message or "a record with the same key already exists", store=_STORE)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return InvalidData(message or "a referenced record does not exist", store=_STORE)
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.NotNullViolationError):
        return InvalidData(message or f"the data breaks the rule {name or 'of the table'}", store=_STORE)
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StoreError(message or "the database role is not allowed to do this", store=_STORE)
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return StoreError("this connection is read-only", store=_STORE)
    if isinstance(exc, asyncpg.DataError):
        return InvalidData("a value has the wrong type or format", store=_STORE)
    if isinstance(exc, asyncpg.QueryCanceledError):
        return StoreUnavailable("the query was cancelled (statement timeout)", store=_STORE)
    if is_outage(exc):  # shutting down, restarting, connection lost, out of connections or resources
        return StoreUnavailable(f"the database cannot serve now (SQLSTATE {exc.sqlstate})", store=_STORE)
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return Conflict("concurrent update; retry the operation", store=_STORE)
    return StoreError(f"database error (SQLSTATE {exc.sqlstate})", store=_STORE)


@contextlib.contextmanager
def pg_errors() -> Iterator[None]:
    """Re-raise server errors from the block as typed store errors."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise translate(exc) from exc
