"""pydantic models of every document type of the credit store and the AI/ML data.

Conventions: `_id` is client-generated (idempotent retries); `user_id` is the string form of a UUID
on every document (shard key); datetimes are UTC with millisecond precision (what BSON keeps);
calendar dates are stored as ISO strings; money is integer minor units with an ISO currency.
Unknown fields are rejected (`extra="forbid"`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

#: `user_id` of documents that belong to no user (e.g. knowledge-base embeddings).
GLOBAL_USER_ID = "00000000-0000-0000-0000-000000000000"


def _uuid_str(v: Any) -> str:
    try:
        return str(uuid.UUID(str(v)))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError("must be a UUID") from exc


def _utc_ms(v: datetime) -> datetime:
    v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    return v.replace(microsecond=v.microsecond // 1000 * 1000)


UserId = Annotated[str, BeforeValidator(_uuid_str)]
UuidStr = Annotated[str, BeforeValidator(_uuid_str)]
UtcDatetime = Annotated[datetime, AfterValidator(_utc_ms)]
Day = Annotated[date, PlainSerializer(lambda d: d.isoformat(), return_type=str)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3,4}$")]
ShortText = Annotated[str, Field(max_length=500)]
FreeText = Annotated[str, Field(max_length=20_000)]


def now() -> datetime:
    return _utc_ms(datetime.now(UTC))


def new_id() -> str:
    return str(uuid.uuid4())


class Doc(BaseModel):
    """Base of every stored document."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=False,
                              validate_assignment=False)

    id: str = Field(default_factory=new_id, alias="_id", max_length=200)

    def to_mongo(self) -> dict[str, Any]:
        """BSON-ready dict (by alias, dates as ISO strings, datetimes kept)."""
        return self.model_dump(by_alias=True, mode="python")

    @classmethod
    def from_mongo(cls, raw: dict[str, Any]) -> Any:
        return cls.model_validate(raw)


class Part(BaseModel):
    """Base of embedded sub-documents."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# credit store
# ---------------------------------------------------------------------------------------------
class Bureau(StrEnum):
    EXPERIAN = "experian"
    EQUIFAX = "equifax"
    TRANSUNION = "transunion"
    EXPERIAN_UK = "experian_uk"
    EQUIFAX_UK = "equifax_uk"
    CRC_NG = "crc_ng"
    FIRSTCENTRAL_NG = "firstcentral_ng"
    XDS_GH = "xds_gh"
    METROPOL_KE = "metropol_ke"
    CREDITINFO_KE = "creditinfo_ke"


class AccountStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    DELINQUENT = "delinquent"
    CHARGED_OFF = "charged_off"
    COLLECTIONS = "collections"


class BureauSubject(Part):
    """Identity block of a bureau file. `ssn`/`bvn`/`nin` are encrypted at rest by the repository."""

    full_name: ShortText
    date_of_birth: Day | None = None
    address: ShortText | None = None
    phone: ShortText | None = None
    ssn: str | None = None
    bvn: str | None = None
    nin: str | None = None


class CreditAccount(Part):
    """One tradeline. `account_number` is encrypted at rest; `account_number_last4` is kept for display."""

    account_id: str = Field(default_factory=new_id)
    creditor: ShortText
    account_type: Literal["credit_card", "personal_loan", "mortgage", "auto_loan", "mobile_money_loan",
                          "bnpl", "student_loan", "utility", "telecom"]
    account_number: str | None = None
    account_number_last4: str | None = Field(None, pattern=r"^[0-9]{0,4}$")
    status: AccountStatus = AccountStatus.OPEN
    opened_on: Day
    closed_on: Day | None = None
    currency: Currency
    balance_minor: int = 0
    credit_limit_minor: int | None = None
    monthly_payment_minor: int | None = None
    payment_history: list[Literal["OK", "30", "60", "90", "120", "CO", "ND"]] = Field(default_factory=list,
                                                                                      max_length=120)
    remarks: FreeText | None = None


class CreditItem(Part):
    """A nested derogatory/informational item: inquiry, late payment, collection, public record."""

    item_id: str = Field(default_factory=new_id)
    kind: Literal["hard_inquiry", "soft_inquiry", "late_payment", "collection", "public_record", "note"]
    description: FreeText
    reported_on: Day
    account_id: str | None = None
    amount_minor: int | None = None
    currency: Currency | None = None


class CreditReport(Doc):
    """A version of a user's file at one bureau; versions are never overwritten."""

    user_id: UserId
    bureau: Bureau
    country: Literal["NG", "GH", "KE", "US", "GB"]
    version: int = Field(0, ge=0)
    valid_from: UtcDatetime = Field(default_factory=now)
    supersedes: str | None = None
    pulled_at: UtcDatetime
    score: int | None = Field(None, ge=0, le=1000)
    score_model: ShortText = "bureau"
    subject: BureauSubject
    accounts: list[CreditAccount] = Field(default_factory=list, max_length=500)
    items: list[CreditItem] = Field(default_factory=list, max_length=1000)
    remarks: FreeText | None = None
    created_at: UtcDatetime = Field(default_factory=now)
    created_by: ShortText = "system"


class ScorePoint(Doc):
    """One point of the score time series (monthly from bureaus, or an estimate)."""

    user_id: UserId
    bureau: Bureau
    score_model: ShortText = "bureau"
    score: int = Field(ge=0, le=1000)
    as_of: UtcDatetime
    source: Literal["bureau", "estimate"] = "bureau"
    report_id: str | None = None
    created_at: UtcDatetime = Field(default_factory=now)


class DisputeStatus(StrEnum):
    OPENED = "opened"
    SUBMITTED_TO_BUREAU = "submitted_to_bureau"
    UNDER_REVIEW = "under_review"
    RESOLVED = "resolved"
    REJECTED = "rejected"


#: The dispute state machine: status -> statuses it may move to.
DISPUTE_TRANSITIONS: dict[DisputeStatus, frozenset[DisputeStatus]] = {
    DisputeStatus.OPENED: frozenset({DisputeStatus.SUBMITTED_TO_BUREAU}),
    DisputeStatus.SUBMITTED_TO_BUREAU: frozenset({DisputeStatus.UNDER_REVIEW}),
    DisputeStatus.UNDER_REVIEW: frozenset({DisputeStatus.RESOLVED, DisputeStatus.REJECTED}),
    DisputeStatus.RESOLVED: frozenset(),
    DisputeStatus.REJECTED: frozenset(),
}


class StatusChange(Part):
    from_status: DisputeStatus | None
    to_status: DisputeStatus
    at: UtcDatetime
    note: FreeText | None = None
    actor: ShortText = "system"


class DisputeLetter(Part):
    letter_id: str = Field(default_factory=new_id)
    sent_at: UtcDatetime
    channel: Literal["post", "email", "portal", "api"] = "portal"
    body: FreeText


class BureauResponseRef(Part):
    response_id: str
    received_at: UtcDatetime
    outcome: Literal["verified", "updated", "deleted", "no_change", "more_info_needed"]


DisputeReason = Literal["not_mine", "incorrect_balance", "incorrect_status", "duplicate", "identity_theft",
                        "paid_in_full", "outdated", "other"]


class Dispute(Doc):
    """A dispute case about an item of a credit report."""

    user_id: UserId
    report_id: str
    bureau: Bureau
    account_id: str | None = None
    item_id: str | None = None
    reason: DisputeReason
    status: DisputeStatus = DisputeStatus.OPENED
    status_history: list[StatusChange] = Field(default_factory=list, max_length=100)
    letters: list[DisputeLetter] = Field(default_factory=list, max_length=50)
    bureau_responses: list[BureauResponseRef] = Field(default_factory=list, max_length=50)
    notes: FreeText | None = None
    opened_at: UtcDatetime = Field(default_factory=now)
    updated_at: UtcDatetime = Field(default_factory=now)
    resolved_at: UtcDatetime | None = None
    revision: int = 0
    last_event_id: str | None = None


class DisputeHead(BaseModel):
    """What the dispute queue lists of a case (`DisputeRepository.queue`): who, which bureau, why, where it
    stands; not its letters, notes or history."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id", max_length=200)
    user_id: UserId
    bureau: Bureau
    reason: DisputeReason
    status: DisputeStatus
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    resolved_at: UtcDatetime | None = None


#: The stored fields a DisputeHead is read from (besides `_id`, the row's key).
DISPUTE_HEAD_FIELDS = tuple(f.alias or name for name, f in DisputeHead.model_fields.items() if name != "id")


class ActionStep(Part):
    step_id: str = Field(default_factory=new_id)
    title: ShortText
    detail: FreeText | None = None
    factor: Literal["payment_history", "utilization", "credit_age", "credit_mix", "inquiries", "disputes",
                    "savings"]
    due_on: Day | None = None
    status: Literal["todo", "in_progress", "done", "skipped"] = "todo"


class ActionPlan(Doc):
    """A versioned credit-building plan for a user."""

    user_id: UserId
    version: int = Field(0, ge=0)
    supersedes: str | None = None
    target_score: int | None = Field(None, ge=0, le=1000)
    horizon_months: int = Field(6, ge=1, le=60)
    steps: list[ActionStep] = Field(default_factory=list, max_length=50)
    summary: FreeText | None = None
    created_by: ShortText = "system"
    created_at: UtcDatetime = Field(default_factory=now)


class BureauResponse(Doc):
    """A bureau's answer to a dispute; the subject identifiers in it are encrypted at rest."""

    user_id: UserId
    dispute_id: str
    bureau: Bureau
    received_at: UtcDatetime
    outcome: Literal["verified", "updated", "deleted", "no_change", "more_info_needed"]
    body: FreeText
    subject: BureauSubject | None = None
    reference: ShortText | None = None


class CreditFactor(Doc):
    """A scoring factor derived from a report version."""

    user_id: UserId
    report_id: str
    bureau: Bureau
    as_of: UtcDatetime
    factor: Literal["payment_history", "utilization", "credit_age", "credit_mix", "inquiries",
                    "derogatory_marks", "thin_file"]
    impact: Literal["positive", "negative", "neutral"]
    weight: float = Field(ge=0, le=1)
    detail: ShortText | None = None


# ---------------------------------------------------------------------------------------------
# AI / ML data (trace -> observations, scores, versioned prompts)
# ---------------------------------------------------------------------------------------------
class ToolCall(Part):
    model_config = ConfigDict(extra="allow")

    name: ShortText
    arguments: dict[str, Any] = Field(default_factory=dict)
    status: ShortText | None = None
    result_count: int | None = None
    duration_ms: float | None = None


class ConversationTurn(Doc):
    """One observation of a trace (conversation): a turn, a tool call or a retrieval."""

    conversation_id: str = Field(max_length=200)  # the trace id
    user_id: UserId
    principal_subject: ShortText
    observation: Literal["turn", "tool_call", "retrieval"] = "turn"
    role: Literal["system", "user", "assistant", "tool"]
    content: FreeText
    tool_calls: list[ToolCall] = Field(default_factory=list, max_length=50)
    retrieved_ids: list[str] = Field(default_factory=list, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=now)
    expires_at: UtcDatetime


class PromptRecord(Doc):
    """A rendered use of a versioned prompt template."""

    name: ShortText
    version: ShortText
    template: FreeText
    template_sha256: str
    variables: dict[str, Any] = Field(default_factory=dict)
    user_id: UserId
    principal_subject: ShortText
    created_at: UtcDatetime = Field(default_factory=now)
    expires_at: UtcDatetime


class FeedbackSignal(Doc):
    """A score on a trace (thumbs, rating, label), or on one observation of it. Kept without expiry."""

    conversation_id: str = Field(max_length=200)
    observation_id: str | None = Field(None, max_length=200)
    user_id: UserId
    principal_subject: ShortText
    score: float = Field(ge=-1, le=5)
    label: ShortText | None = None
    comment: FreeText | None = None
    created_at: UtcDatetime = Field(default_factory=now)


class ModelPrediction(Doc):
    """A model output with its inputs, for monitoring and adverse-action explanations."""

    model: ShortText
    version: ShortText
    user_id: UserId
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    latency_ms: float = Field(ge=0)
    created_at: UtcDatetime = Field(default_factory=now)


class EmbeddingRecord(Doc):
    """Metadata of an embedded chunk; the vector itself lives in OpenSearch under `vector_id`."""

    user_id: UserId = GLOBAL_USER_ID
    #: retrieval's doc types (`retrieval.documents.DOC_TYPES`) plus the earlier names.
    source_type: Literal["kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document",
                         "knowledge", "transaction", "faq"]
    source_id: str = Field(max_length=256)
    source_version: str | None = Field(None, max_length=64)
    chunk_index: int = Field(ge=0)
    vector_id: str = Field(max_length=300)
    index_name: ShortText
    model: ShortText
    dim: int = Field(gt=0, le=8192)
    text_sha256: str
    token_count: int | None = None
    created_at: UtcDatetime = Field(default_factory=now)


class TrainingExample(Doc):
    """A labelled example for fine-tuning/evaluation. Kept without expiry; consent recorded."""

    user_id: UserId
    dataset: ShortText
    split: Literal["train", "validation", "test"] = "train"
    features: dict[str, Any]
    label: Any
    source_conversation_id: str | None = None
    consent: bool = False
    created_at: UtcDatetime = Field(default_factory=now)
