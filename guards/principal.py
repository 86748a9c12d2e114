"""Who is calling: a principal is built only from a verified token, never from tool arguments."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class Role(StrEnum):
    CUSTOMER = "customer"
    SUPPORT_AGENT = "support_agent"
    CREDIT_COACH = "credit_coach"
    RISK_ANALYST = "risk_analyst"
    COMPLIANCE_OFFICER = "compliance_officer"


class Principal(BaseModel):
    """The verified caller: role, subject and, for customers, the user id the token binds."""

    model_config = ConfigDict(frozen=True)

    subject: str
    role: Role
    user_id: UUID | None = None
    token_id: str
    expires_at: int
    issuer: str
