"""Tool inputs: pydantic models whose JSON schemas the MCP clients see. Unknown arguments are refused.

No input names a principal: scope comes from the verified token. `user_id` is accepted only so
staff can narrow to one user inside their scope; for customers it must be omitted or be their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from stores.postgres.models import TransactionStatus

MAX_LIMIT = 100
Cursor = Annotated[str, Field(max_length=512, pattern=r"^[A-Za-z0-9_\-=.]+$",
                              description="Opaque cursor from a previous page's next_cursor.")]
UserId = Annotated[UUID | None, Field(
    description="Staff only: narrow to this user (must be inside your scope). Customers: omit it.")]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"Page size, 1..{MAX_LIMIT}.")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SearchTransactionsInput(_Input):
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


class GetTransactionInput(_Input):
    """One transaction with its double-entry ledger postings."""

    transaction_id: UUID


class GetWalletBalancesInput(_Input):
    """Wallet balances per currency (ledger-derived)."""

    user_id: UserId = None


class GetCreditReportInput(_Input):
    """The latest credit report, or a given version, or the version valid at a point in time."""

    user_id: UserId = None
    version: int | None = Field(None, ge=1, le=10_000)
    as_of: datetime | None = Field(None, description="Return the version that was valid at this time.")

    @model_validator(mode="after")
    def _one_selector(self) -> GetCreditReportInput:
        if self.version is not None and self.as_of is not None:
            raise ValueError("give either version or as_of, not both")
        return self


class GetScoreHistoryInput(_Input):
    """Monthly credit score history."""

    user_id: UserId = None
    date_from: datetime | None = None
    date_to: datetime | None = None


class GetActionPlanInput(_Input):
    """The current credit-building action plan."""

    user_id: UserId = None


class ListDisputesInput(_Input):
    """Credit disputes in your scope, newest first (support staff without user_id: the queue of all users)."""

    user_id: UserId = None
    status: Literal["opened", "submitted_to_bureau", "under_review", "resolved", "rejected"] | None = None
    cursor: Cursor | None = None
    limit: Limit = 20


class GetDisputeInput(_Input):
    """One dispute case with its letters, bureau responses and history."""

    dispute_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    user_id: UUID | None = Field(None, description="Staff: required, the user the dispute belongs to. "
                                                   "Customers: omit it.")


class SearchKnowledgeInput(_Input):
    """Retrieve passages (help articles and, within your scope, your records) for a question."""

    query: str = Field(min_length=2, max_length=2000)
    k: int = Field(5, ge=1, le=20)
    mode: Literal["hybrid", "knn", "bm25"] = "hybrid"
    doc_types: list[Literal["kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document"]] | None = (
        Field(None, max_length=6))
    min_score: float | None = Field(None, ge=0, le=1)
    conversation_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                                        description="Log this retrieval under a conversation.")


class LogFeedbackInput(_Input):
    """Record feedback on an answer (stored redacted in the AI feedback log)."""

    conversation_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    score: int = Field(ge=-1, le=5, description="-1 (harmful) .. 5 (excellent).")
    label: Literal["helpful", "not_helpful", "incorrect", "unsafe", "other"] = "other"
    comment: str | None = Field(None, max_length=2000)


class CorridorVolumeInput(_Input):
    """Aggregated transaction volume by corridor and day (no row-level data)."""

    date_from: datetime
    date_to: datetime
    corridor: str | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z]{2}$")

    @model_validator(mode="after")
    def _range(self) -> CorridorVolumeInput:
        if self.date_from >= self.date_to:
            raise ValueError("date_from must be before date_to")
        if self.date_to - self.date_from > timedelta(days=400):
            raise ValueError("range may span at most 400 days")
        return self


class SearchAuditLogsInput(_Input):
    """Audit trail search. Unmasked output needs a stated reason, and is itself audited."""

    actor_subject: str | None = Field(None, max_length=200)
    action: str | None = Field(None, max_length=100)
    decision: Literal["allowed", "denied", "rate_limited", "error"] | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    limit: Limit = 50
    unmask_reason: str | None = Field(None, min_length=10, max_length=500,
                                      description="Why unmasked values are needed (case or ticket id).")
