"""Payment tools: transaction search with a cursor, one transaction with its ledger, wallet balances."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, PrivateAttr

from agent_tools.inputs import GetTransactionInput, GetWalletBalancesInput, SearchTransactionsInput
from guards.principal import Principal, Role
from stores.postgres.models import COUNTERPARTY_TYPES, CounterpartyType
from stores.postgres.transactions import VISIBLE_TO_STAFF


class TransactionSummaryOut(BaseModel):
    transaction_id: UUID
    user_id: UUID
    created_at: datetime
    kind: str
    status: str
    corridor: str | None = None
    amount_minor: int
    currency: str
    fee_minor: int = 0
    dest_amount_minor: int | None = None
    dest_currency: str | None = None
    reference: str
    #: "person" (remittance, payout: the name is masked for staff), "merchant" (card payment) or "system"
    #: (deposit, refund, FX conversion, fee: the platform's own wording).
    counterparty_type: CounterpartyType
    counterparty_name: str | None = None
    description: str | None = None


class TransactionPage(BaseModel):
    transactions: list[TransactionSummaryOut]
    next_cursor: str | None = None
    _page: Any = PrivateAttr(default=None)

    def cursor_after(self, index: int) -> str | None:
        """The cursor resuming right after `transactions[index]` (used when the output budget cuts the page)."""
        return self._page.cursor_after(index) if self._page is not None else None


class LedgerEntryOut(BaseModel):
    line_no: int
    wallet_id: UUID
    currency: str
    direction: str
    amount_minor: int
    entry_type: str


class TransactionDetailOut(TransactionSummaryOut):
    fx_rate: Decimal | None = None
    fx_rate_observed_at: datetime | None = None
    memo: str | None = None
    failure_reason: str | None = None
    completed_at: datetime | None = None
    ledger_entries: list[LedgerEntryOut]
    #: Debits equal credits in every currency (checked on what is returned).
    ledger_balanced: bool


class WalletOut(BaseModel):
    wallet_id: UUID
    currency: str
    balance_minor: int
    status: str
    label: str | None = None


class WalletBalancesOut(BaseModel):
    user_id: UUID
    wallets: list[WalletOut]


_RENAMES = {"id": "transaction_id", "corridor_id": "corridor"}


def pick(obj: Any, model: type[BaseModel], renames: dict[str, str] | None = None) -> dict[str, Any]:
    """The fields of `model` taken from a repository result (pydantic model or mapping)."""
    data = obj.model_dump() if isinstance(obj, BaseModel) else dict(obj)
    for src, dst in (renames or _RENAMES).items():
        if src in data and dst not in data:
            data[dst] = data[src]
    return {k: data[k] for k in model.model_fields if k in data}


#: Counterparty names each role sees unmasked, hence may search: a customer its own counterparties, staff only
#: merchants and the platform (a person's name is masked for them, so a probe on it must look like a miss).
_ALL_TYPES: tuple[CounterpartyType, ...] = tuple(sorted(set(COUNTERPARTY_TYPES.values())))


def searchable_counterparty_types(principal: Principal) -> tuple[CounterpartyType, ...]:
    return _ALL_TYPES if principal.role is Role.CUSTOMER else VISIBLE_TO_STAFF


async def search_transactions(args: SearchTransactionsInput, principal: Principal, rt: Any) -> TransactionPage:
    scope = await rt.scope_for(principal, args.user_id)
    page = await rt.transactions.search(
        scope, date_from=args.date_from, date_to=args.date_to, status=args.status, corridor=args.corridor,
        min_amount_minor=args.min_amount_minor, max_amount_minor=args.max_amount_minor, currency=args.currency,
        reference=args.reference, counterparty=args.counterparty,
        counterparty_types=searchable_counterparty_types(principal), cursor=args.cursor, limit=args.limit)
    out = TransactionPage(transactions=[TransactionSummaryOut(**pick(t, TransactionSummaryOut)) for t in page.items],
                          next_cursor=page.next_cursor)
    out._page = page
    return out


def _balanced(entries: list[LedgerEntryOut]) -> bool:
    totals: dict[str, int] = {}
    for e in entries:
        totals[e.currency] = totals.get(e.currency, 0) + (e.amount_minor if e.direction == "debit" else -e.amount_minor)
    return all(v == 0 for v in totals.values())


async def get_transaction(args: GetTransactionInput, principal: Principal, rt: Any) -> TransactionDetailOut:
    scope = await rt.scope_for(principal, None)
    tx = await rt.transactions.get(scope, args.transaction_id)
    data = pick(tx, TransactionDetailOut)
    entries = [LedgerEntryOut(**pick(e, LedgerEntryOut)) for e in tx.entries]
    data.update(ledger_entries=entries, ledger_balanced=_balanced(entries))
    return TransactionDetailOut(**data)


async def get_wallet_balances(args: GetWalletBalancesInput, principal: Principal, rt: Any) -> WalletBalancesOut:
    uid = args.user_id or principal.user_id
    if uid is None:
        from guards.errors import BadInput

        raise BadInput("invalid arguments: user_id is required for staff roles")
    scope = await rt.scope_for(principal, uid)
    rows = await rt.wallets.balances(scope, uid)
    return WalletBalancesOut(user_id=uid, wallets=[WalletOut(**pick(w, WalletOut, {"id": "wallet_id"})) for w in rows])
