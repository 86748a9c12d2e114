"""Payment tools: transaction search with a cursor, one transaction with its ledger, wallet balances."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, Field, PrivateAttr, StringConstraints, model_validator

from agent_tools.common import Cursor, Limit, ToolInput, UserId, money, more, pick
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import UserScope, one_user, own_rows, searchable_counterparty_types
from guards.principal import Role
from stores.postgres.models import CounterpartyType, TransactionStatus
from stores.scope import RowScope

CUSTOMERS_AND_SUPPORT = {Role.CUSTOMER, Role.SUPPORT_AGENT}


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


def _counterparty(t: dict[str, Any]) -> str:
    """`, counterparty (merchant): <name>`; the name as the payload has it (already redacted and delimited)."""
    kind = t.get("counterparty_type")
    if not kind:
        return ""
    name = t.get("counterparty_name")
    return f", counterparty ({kind}){': ' + name if name else ''}"


# --- search_transactions ----------------------------------------------------------------------------------

class SearchTransactionsInput(ToolInput):
    """Search transactions in your scope, newest first, with filters and a cursor."""

    user_id: UserId = None
    date_from: datetime | None = Field(None, description="Inclusive lower bound (ISO 8601).")
    date_to: datetime | None = Field(None, description="Exclusive upper bound (ISO 8601).")
    status: TransactionStatus | None = Field(None, description="Transaction status (the database's own values).")
    corridor: str | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z]{2}$", description="e.g. US-NG, GB-GH, US-KE.")
    min_amount_minor: int | None = Field(None, ge=0, le=10**15, description="Minor units (e.g. cents, kobo).")
    max_amount_minor: int | None = Field(None, ge=0, le=10**15)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3,4}$", description="ISO 4217 or USDC/USDT.")
    reference: str | None = Field(None, min_length=5, max_length=16, pattern=r"^KRD-[0-9A-Z]{1,12}$",
                                  description="Platform reference shown on every transaction (KRD- and 12 "
                                              "characters): the whole reference, or its start.")
    # Taken verbatim (not stripped like other text): the comparison itself ignores case and whitespace.
    counterparty: Annotated[str, StringConstraints(strip_whitespace=False)] | None = Field(
        None, min_length=2, max_length=200,
        description="Exact counterparty name, ignoring case and extra spaces (no partial match). Customers: any "
                    "of their transactions. Staff: only merchant and system counterparties (card payments, "
                    "deposits, refunds, FX), whose names they can see; person counterparties never match.")
    cursor: Cursor | None = None
    limit: Limit = 20

    @model_validator(mode="after")
    def _ranges(self) -> SearchTransactionsInput:
        if self.counterparty is not None and len(" ".join(self.counterparty.split())) < 2:
            raise ValueError("counterparty needs at least 2 characters besides spaces")
        if self.date_from and self.date_to and self.date_from >= self.date_to:
            raise ValueError("date_from must be before date_to")
        if self.date_from and self.date_to and self.date_to - self.date_from > timedelta(days=3660):
            raise ValueError("date range may span at most 10 years")
        if (self.min_amount_minor is not None and self.max_amount_minor is not None
                and self.min_amount_minor > self.max_amount_minor):
            raise ValueError("min_amount_minor must not exceed max_amount_minor")
        return self


class TransactionPage(BaseModel):
    transactions: list[TransactionSummaryOut]
    next_cursor: str | None = None
    _page: Any = PrivateAttr(default=None)

    def cursor_after(self, index: int) -> str | None:
        """The cursor resuming right after `transactions[index]` (used when the output budget cuts the page)."""
        return self._page.cursor_after(index) if self._page is not None else None


async def search_transactions(args: SearchTransactionsInput, ctx: ToolContext[RowScope]) -> TransactionPage:
    page = await ctx.repos.transactions.search(
        ctx.scope, date_from=args.date_from, date_to=args.date_to, status=args.status, corridor=args.corridor,
        min_amount_minor=args.min_amount_minor, max_amount_minor=args.max_amount_minor, currency=args.currency,
        reference=args.reference, counterparty=args.counterparty,
        counterparty_types=searchable_counterparty_types(ctx.principal), cursor=args.cursor, limit=args.limit)
    out = TransactionPage(transactions=[TransactionSummaryOut(**pick(t, TransactionSummaryOut)) for t in page.items],
                          next_cursor=page.next_cursor)
    out._page = page
    return out


def render_transactions(p: dict[str, Any]) -> str:
    rows = p.get("transactions", [])
    lines = [f"{len(rows)} transaction(s){more(p)}:"]
    for t in rows[:10]:
        lines.append(f"- {t['created_at'][:10]} {t['status']} {t['kind']} {money(t['amount_minor'], t['currency'])}"
                     f"{' ' + t['corridor'] if t.get('corridor') else ''} ref {t['reference']}{_counterparty(t)}")
    if len(rows) > 10:
        lines.append(f"- … {len(rows) - 10} more in the structured content")
    return "\n".join(lines)


SEARCH_TRANSACTIONS = ToolSpec(
    name="search_transactions", title="Search transactions",
    description="Search payments in your scope by date range, status, corridor, amount range, currency, platform "
                "reference (KRD-..., whole or its start) and counterparty name. The counterparty filter is an exact "
                "name match (case and extra spaces ignored, no partial match), and only on names you can see: "
                "customers on all their payments, staff on merchant and system counterparties only (a person's "
                "name is masked for staff and never matches); account references are never searchable. Each row "
                "says its counterparty_type (person, merchant, system). Newest first; pass next_cursor for the "
                "next page (after a cut page it continues right after the last row shown). Amounts are minor "
                "units.",
    input_model=SearchTransactionsInput, output_model=TransactionPage, handler=search_transactions,
    grant=CUSTOMERS_AND_SUPPORT, scope=own_rows(narrow_to="user_id"), list_field="transactions",
    render=render_transactions)


# --- get_transaction --------------------------------------------------------------------------------------

class GetTransactionInput(ToolInput):
    """One transaction with its double-entry ledger postings."""

    transaction_id: UUID


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


def _balanced(entries: list[LedgerEntryOut]) -> bool:
    totals: dict[str, int] = {}
    for e in entries:
        totals[e.currency] = totals.get(e.currency, 0) + (e.amount_minor if e.direction == "debit" else -e.amount_minor)
    return all(v == 0 for v in totals.values())


async def get_transaction(args: GetTransactionInput, ctx: ToolContext[RowScope]) -> TransactionDetailOut:
    tx = await ctx.repos.transactions.get(ctx.scope, args.transaction_id)
    data = pick(tx, TransactionDetailOut)
    entries = [LedgerEntryOut(**pick(e, LedgerEntryOut)) for e in tx.entries]
    data.update(ledger_entries=entries, ledger_balanced=_balanced(entries))
    return TransactionDetailOut(**data)


def render_transaction(p: dict[str, Any]) -> str:
    balanced = "balanced" if p.get("ledger_balanced") else "NOT balanced"
    return (f"Transaction {p['reference']} ({p['status']} {p['kind']}{_counterparty(p)}): "
            f"{money(p['amount_minor'], p['currency'])}, fee {money(p.get('fee_minor'), p['currency'])}; "
            f"{len(p.get('ledger_entries', []))} ledger entries, {balanced}.")


GET_TRANSACTION = ToolSpec(
    name="get_transaction", title="Get a transaction",
    description="One transaction with its double-entry ledger postings (each posting set balances to zero).",
    input_model=GetTransactionInput, output_model=TransactionDetailOut, handler=get_transaction,
    grant=CUSTOMERS_AND_SUPPORT, scope=own_rows(), render=render_transaction)


# --- get_wallet_balances ----------------------------------------------------------------------------------

class GetWalletBalancesInput(ToolInput):
    """Wallet balances per currency (ledger-derived)."""

    user_id: UserId = None


class WalletOut(BaseModel):
    wallet_id: UUID
    currency: str
    balance_minor: int
    status: str
    label: str | None = None


class WalletBalancesOut(BaseModel):
    user_id: UUID
    wallets: list[WalletOut]


async def get_wallet_balances(args: GetWalletBalancesInput, ctx: ToolContext[UserScope]) -> WalletBalancesOut:
    rows = await ctx.repos.wallets.balances(ctx.scope.rows, ctx.scope.user_id)
    return WalletBalancesOut(user_id=ctx.scope.user_id,
                             wallets=[WalletOut(**pick(w, WalletOut, {"id": "wallet_id"})) for w in rows])


def render_wallets(p: dict[str, Any]) -> str:
    items = ", ".join(money(w["balance_minor"], w["currency"]) for w in p.get("wallets", []))
    return f"Wallet balances: {items or 'none'}."


GET_WALLET_BALANCES = ToolSpec(
    name="get_wallet_balances", title="Wallet balances",
    description="Balances per wallet and currency, derived from the ledger.",
    input_model=GetWalletBalancesInput, output_model=WalletBalancesOut, handler=get_wallet_balances,
    grant=CUSTOMERS_AND_SUPPORT, scope=one_user("user_id"), list_field="wallets", render=render_wallets)
