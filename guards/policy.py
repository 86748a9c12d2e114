"""Which role may call which tool (deny by default) and with what row scope."""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guards.errors import Forbidden
from guards.principal import Principal, Role

R = Role
#: The whole grant table. A tool or role missing here is denied.
GRANTS: dict[str, frozenset[Role]] = {
    "search_transactions": frozenset({R.CUSTOMER, R.SUPPORT_AGENT}),
    "get_transaction": frozenset({R.CUSTOMER, R.SUPPORT_AGENT}),
    "get_wallet_balances": frozenset({R.CUSTOMER, R.SUPPORT_AGENT}),
    "get_credit_report": frozenset({R.CUSTOMER, R.CREDIT_COACH}),
    "get_score_history": frozenset({R.CUSTOMER, R.CREDIT_COACH}),
    "get_action_plan": frozenset({R.CUSTOMER, R.CREDIT_COACH}),
    "list_disputes": frozenset({R.CUSTOMER, R.SUPPORT_AGENT}),
    "get_dispute": frozenset({R.CUSTOMER, R.SUPPORT_AGENT}),
    "search_knowledge": frozenset(Role),
    "log_feedback": frozenset(Role),
    "corridor_volume": frozenset({R.RISK_ANALYST, R.COMPLIANCE_OFFICER}),
    "search_audit_logs": frozenset({R.COMPLIANCE_OFFICER}),
}

#: Document types each role may retrieve through search_knowledge (public articles for all).
KNOWLEDGE_DOC_TYPES: dict[Role, frozenset[str]] = {
    R.CUSTOMER: frozenset({"kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document"}),
    R.SUPPORT_AGENT: frozenset({"kb", "dispute", "dispute_letter"}),
    R.CREDIT_COACH: frozenset({"kb", "credit_report", "action_plan"}),
    R.RISK_ANALYST: frozenset({"kb"}),
    R.COMPLIANCE_OFFICER: frozenset({"kb"}),
}

#: Roles whose row scope covers every user for the tools they are granted.
ALL_USERS_ROLES = frozenset({R.SUPPORT_AGENT})


def authorize(principal: Principal, tool: str) -> None:
    """Raise Forbidden unless the role is granted the tool."""
    if principal.role not in GRANTS.get(tool, frozenset()):
        raise Forbidden(f"role '{principal.role.value}' may not call '{tool}'")


# --- unmasking: a structured, auditable reason ----------------------------------------------------------

DEFAULT_UNMASK_TICKET_PATTERN = r"^(CASE|INC|SAR|DSR)-\d{4,}\b"
UNMASK_MIN_PURPOSE_CHARS = 10


class UnmaskPolicy(BaseSettings):
    """`KREDETE_UNMASK_TICKET_PATTERN`: the ticket reference an unmask reason must start with (a regex)."""

    model_config = SettingsConfigDict(env_prefix="KREDETE_UNMASK_", env_file=None, extra="ignore")

    ticket_pattern: str = DEFAULT_UNMASK_TICKET_PATTERN

    @field_validator("ticket_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        re.compile(v)
        return v


@lru_cache(maxsize=1)
def unmask_policy() -> UnmaskPolicy:
    return UnmaskPolicy()


def unmask_reason_rule(policy: UnmaskPolicy | None = None) -> str:
    """The rule in words, for tool descriptions and error messages."""
    p = (policy or unmask_policy()).ticket_pattern
    return (f"a ticket reference matching {p} (e.g. CASE-12345), then the purpose in at least "
            f"{UNMASK_MIN_PURPOSE_CHARS} characters, e.g. 'CASE-12345: verify identity for a chargeback claim'")


def check_unmask_reason(reason: str, policy: UnmaskPolicy | None = None) -> str:
    """The reason, stripped, if it names a ticket and a purpose; ValueError (never echoing it) otherwise."""
    policy = policy or unmask_policy()
    text = reason.strip()
    m = re.match(policy.ticket_pattern, text)
    if m is None or m.end() == 0:
        raise ValueError(f"unmask_reason must start with {unmask_reason_rule(policy)}")
    purpose = text[m.end():].lstrip(" \t:;,.-–—#")
    if len(purpose.strip()) < UNMASK_MIN_PURPOSE_CHARS or not re.search(r"[^\W\d_]{2}", purpose):
        raise ValueError(f"unmask_reason needs, after the ticket reference, the purpose in at least "
                         f"{UNMASK_MIN_PURPOSE_CHARS} characters")
    return text
