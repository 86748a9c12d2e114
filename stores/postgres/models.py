"""Typed results of the payments repositories (pydantic v2). Money is integer minor units + currency."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Generic, Literal, TypeVar, get_args
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, computed_field

#: Exactly the values of the database enum `transaction_status` (migration 0003; a test compares them).
TransactionStatus = Literal["pending", "processing", "completed", "failed", "cancelled", "reversed"]
TRANSACTION_STATUSES: tuple[str, ...] = get_args(TransactionStatus)
TransactionKind = Literal["deposit", "remittance", "payout", "fx_conversion", "refund", "card_payment", "fee"]
#: Who is on the other side of a transaction: a person (masked for staff), a merchant or the platform itself.
CounterpartyType = Literal["person", "merchant", "system"]
COUNTERPARTY_TYPES: dict[str, CounterpartyType] = {
    "remittance": "person", "payout": "person", "card_payment": "merchant",
    "deposit": "system", "refund": "system", "fx_conversion": "system", "fee": "system"}


#: Only money that left a customer wallet can be given back; a refunded deposit or FX conversion would create
#: money. The service, the seed's bulk validation and the database's refunds_guard (migration 0008) use this list.
REFUNDABLE_KINDS: frozenset[str] = frozenset({"remittance", "card_payment", "payout"})


def counterparty_type(kind: str) -> CounterpartyType:
    """The counterparty type of a transaction kind (an unknown kind counts as a person: masked, never searched)."""
    return COUNTERPARTY_TYPES.get(kind, "person")


def kinds_with_counterparty(*types: CounterpartyType) -> tuple[str, ...]:
    """The transaction kinds whose counterparty is one of `types`."""
    return tuple(k for k, t in COUNTERPARTY_TYPES.items() if t in types)
Decision = Literal["allowed", "denied", "rate_limited", "error"]
Granularity = Literal["hour", "day", "week", "month"]

T = TypeVar("T")


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of results; pass `next_cursor` back to get the next one (None: no more).

    `item_cursors[i]`, when given, is the cursor that resumes right after `items[i]` (same query, same scope
    binding as `next_cursor`): a caller that shows only a prefix of the page continues from what it showed."""

    items: list[T]
    next_cursor: str | None = None
    item_cursors: list[str] = Field(default_factory=list, exclude=True, repr=False)

    def cursor_after(self, index: int) -> str | None:
        """Cursor resuming after `items[index]`; for the last item, `next_cursor` (None when nothing follows)."""
        if index == len(self.items) - 1:
            return self.next_cursor
        return self.item_cursors[index] if 0 <= index < len(self.item_cursors) else None


class Series(BaseModel, Generic[T]):
    """Rows of an aggregate query. `truncated` is True when the row cap cut the result: ask for a narrower
    range or a coarser granularity. `suppressed_cells` counts the groups withheld because they were smaller
    than the minimum cell size (too few transactions or users to be shown without pointing at a person).
    Iterates, indexes and counts like its `items` (callers that took a list)."""

    items: list[T]
    truncated: bool = False
    suppressed_cells: int = 0

    def __iter__(self):  # type: ignore[override]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


class TransactionSummary(_Row):
    id: UUID
    created_at: datetime
    user_id: UUID
    kind: TransactionKind
    status: TransactionStatus
    corridor_id: str | None
    amount_minor: int
    currency: str
    fee_minor: int
    dest_amount_minor: int | None
    dest_currency: str | None
    reference: str
    counterparty_name: str | None
    description: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counterparty_type(self) -> CounterpartyType:
        return counterparty_type(self.kind)


class LedgerEntry(_Row):
    line_no: int
    wallet_id: UUID
    currency: str
    direction: Literal["debit", "credit"]
    amount_minor: int
    entry_type: str


class RefundSummary(_Row):
    id: UUID
    amount_minor: int
    currency: str
    status: Literal["pending", "completed", "failed"]
    reason: str
    created_at: datetime
    refund_transaction_id: UUID | None


class TransactionDetail(TransactionSummary):
    updated_at: datetime
    wallet_id: UUID
    fx_rate: Decimal | None
    fx_rate_observed_at: datetime | None
    fx_order_id: UUID | None
    payment_method_id: UUID | None
    counterparty_reference: str | None
    memo: str | None
    failure_reason: str | None
    completed_at: datetime | None
    entries: list[LedgerEntry] = Field(default_factory=list)
    refunds: list[RefundSummary] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def refunded_minor(self) -> int:
        return sum(r.amount_minor for r in self.refunds if r.status != "failed")


class WalletBalance(_Row):
    wallet_id: UUID
    currency: str
    exponent: int
    balance_minor: int
    status: Literal["active", "frozen", "closed"]
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def balance(self) -> Decimal:
        """Major units, exact (e.g. Decimal('1234.56'))."""
        return Decimal(self.balance_minor).scaleb(-self.exponent)


class UserProfile(_Row):
    id: UUID
    created_at: datetime
    status: Literal["pending", "active", "suspended", "closed"]
    country: str
    home_currency: str
    kyc_level: Literal["none", "basic", "full"]
    deleted_at: datetime | None = None
    #: Decrypted only when asked for and the role may read the ciphertexts.
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None


class CorridorVolume(_Row):
    bucket: datetime
    corridor_id: str
    currency: str
    dest_currency: str | None
    transaction_count: int
    amount_minor: int
    fee_minor: int
    dest_amount_minor: int


class WalletDayVolume(_Row):
    day: date
    wallet_id: UUID
    currency: str
    entries: int
    credits_minor: int
    debits_minor: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net_minor(self) -> int:
        return self.credits_minor - self.debits_minor


class FxRate(_Row):
    id: int
    base_currency: str
    quote_currency: str
    rate: Decimal
    source: str
    observed_at: datetime


class Corridor(_Row):
    id: str
    source_country: str
    dest_country: str
    source_currency: str
    dest_currency: str
    enabled: bool
    min_amount_minor: int
    max_amount_minor: int
    fee_bps: int
    fee_fixed_minor: int


class AuditEntry(BaseModel):
    """What one audited action records (the input of `AuditRepository.append`)."""

    model_config = ConfigDict(frozen=True)

    actor_subject: str = Field(min_length=1, max_length=200)
    actor_role: str = Field(min_length=1, max_length=100)
    actor_user_id: UUID | None = None
    action: str = Field(min_length=1, max_length=200)
    resource: str | None = None
    args_digest: str | None = None
    decision: Decision
    reason: str | None = None
    rows_returned: int = Field(0, ge=0)
    redactions: dict[str, int] = Field(default_factory=dict)
    latency_ms: int = Field(0, ge=0)
    request_id: str | None = None
    metadata: dict[str, object] = Field(default_factory=dict)
    occurred_at: datetime | None = None


class AuditRecord(_Row):
    id: int
    occurred_at: datetime
    actor_subject: str
    actor_role: str
    actor_user_id: UUID | None
    action: str
    resource: str | None
    args_digest: str | None
    decision: Decision
    reason: str | None
    rows_returned: int
    redactions: dict[str, int]
    latency_ms: int
    request_id: str | None
    metadata: dict[str, object]
    hash: str


class ChainReport(_Row):
    ok: bool
    rows_checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    last_id: int | None = None
