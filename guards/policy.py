"""Which role may call which tool (deny by default) and with what row scope."""

from __future__ import annotations

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
