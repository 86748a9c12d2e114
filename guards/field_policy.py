"""The second barrier for staff: which free-text fields each role sees at all.

Redaction masks the PII it finds; free text (memos, descriptions, dispute notes, letters) is where it can miss
some (a third party's name in an unusual spelling, say). Staff read other people's text, so this policy,
declared here and nowhere else, decides per role and field whether the text is shown (redacted), shown
redacted and cut short, or withheld: it never leaves the server. A call made with a checked unmask reason
(`CallState.unmasked`, audited with its reason) sees every field whole, still redacted by the role's policy.
A role the table does not name, or a kind of text missing from its row, is withheld: deny by default.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from guards.payload import map_strings
from guards.principal import Role


class Treatment(StrEnum):
    SHOW = "show"          # whole, redacted
    TRUNCATE = "truncate"  # redacted, then cut to TRUNCATE_AT characters
    WITHHOLD = "withhold"  # replaced by WITHHELD before redaction even sees it


class TextKind(StrEnum):
    """What a free-text field holds, whoever wrote it."""

    PAYMENT_MEMO = "payment_memo"                # a customer's own note on a payment
    PAYMENT_DESCRIPTION = "payment_description"  # the payment's description (its payee sees it too)
    DISPUTE_NOTE = "dispute_note"                # case notes and status-change notes of a dispute
    LETTER = "letter"                            # a dispute letter sent to a bureau
    BUREAU_REMARK = "bureau_remark"              # remarks and item descriptions a bureau reported
    PLAN_TEXT = "plan_text"                      # our action plan's summary and step details
    #: passages search_knowledge retrieved: help articles, and records only of the document types the role
    #: may search at all (guards.access, a barrier of its own)
    RETRIEVED = "retrieved"


#: (tool, output field at any depth) -> the kind of free text it holds. Every other output field is an id,
#: enum, amount, date or name already handled by redaction; tests/unit/test_field_policy.py checks that every
#: free-text-looking string field of a declared tool's output is listed here.
FREE_TEXT: dict[tuple[str, str], TextKind] = {
    ("get_transaction", "memo"): TextKind.PAYMENT_MEMO,
    ("get_transaction", "description"): TextKind.PAYMENT_DESCRIPTION,
    ("search_transactions", "description"): TextKind.PAYMENT_DESCRIPTION,
    ("get_dispute", "notes"): TextKind.DISPUTE_NOTE,
    ("get_dispute", "note"): TextKind.DISPUTE_NOTE,
    ("get_dispute", "body"): TextKind.LETTER,
    ("get_credit_report", "remarks"): TextKind.BUREAU_REMARK,
    ("get_credit_report", "description"): TextKind.BUREAU_REMARK,
    ("get_action_plan", "summary"): TextKind.PLAN_TEXT,
    ("get_action_plan", "detail"): TextKind.PLAN_TEXT,
    ("search_knowledge", "text"): TextKind.RETRIEVED,
}

#: Characters of a truncated field kept after redaction (so a cut can never split a value redaction missed).
TRUNCATE_AT = 80
WITHHELD = "[withheld by the staff field policy]"

_S, _T, _W = Treatment.SHOW, Treatment.TRUNCATE, Treatment.WITHHOLD
_K = TextKind

#: Role -> kind of free text -> treatment; a kind missing from a role's row is withheld.
FIELD_POLICY: dict[Role, dict[TextKind, Treatment]] = {
    # Customers read their own records whole.
    Role.CUSTOMER: dict.fromkeys(TextKind, _S),
    # Support works transfers and disputes: the gist of a description or a case note, never a memo or a letter.
    Role.SUPPORT_AGENT: {_K.PAYMENT_DESCRIPTION: _T, _K.DISPUTE_NOTE: _T, _K.PAYMENT_MEMO: _W, _K.LETTER: _W,
                         _K.RETRIEVED: _S},
    # Coaching needs the credit file and the plan, the gist of a dispute, and nothing people write on payments.
    Role.CREDIT_COACH: {_K.BUREAU_REMARK: _S, _K.PLAN_TEXT: _S, _K.DISPUTE_NOTE: _T, _K.LETTER: _T,
                        _K.RETRIEVED: _S},
    # Risk looks at payment patterns, never at anyone's correspondence.
    Role.RISK_ANALYST: {_K.PAYMENT_DESCRIPTION: _T, _K.PAYMENT_MEMO: _T, _K.BUREAU_REMARK: _T, _K.RETRIEVED: _S},
    # Compliance sees the gist by default, and the whole text with a stated, audited reason.
    Role.COMPLIANCE_OFFICER: {**dict.fromkeys(TextKind, _T), _K.RETRIEVED: _S},
}


#: Tools with some declared free text: for any other tool (or an unmasked call) every field is SHOW.
_TOOLS_WITH_FREE_TEXT = frozenset(tool for tool, _ in FREE_TEXT)


def applies(tool: str, *, unmasked: bool) -> bool:
    """Whether `apply` can change anything in `tool`'s output (False: every field's treatment is SHOW)."""
    return not unmasked and tool in _TOOLS_WITH_FREE_TEXT


def treatment(role: Role | str, tool: str, field: str, *, unmasked: bool = False) -> Treatment:
    """How `field` of `tool`'s output reaches `role`: SHOW unless it is declared free text; WITHHOLD for a
    role or kind the policy does not name."""
    kind = FREE_TEXT.get((tool, field))
    if kind is None or unmasked:
        return Treatment.SHOW
    try:
        rules = FIELD_POLICY[Role(role)]
    except (KeyError, ValueError):
        return Treatment.WITHHOLD
    return rules.get(kind, Treatment.WITHHOLD)


def apply(payload: Any, role: Role | str, tool: str, *, unmasked: bool, stage: Treatment) -> tuple[Any, int]:
    """Apply the policy's `stage` (WITHHOLD before redaction, TRUNCATE after it) to every free-text field of
    a tool's nested output; returns the new payload and how many fields it changed (for the audit row)."""
    changed = 0

    def one(key: str | None, text: str) -> str:
        nonlocal changed
        if key is None or not text or treatment(role, tool, key, unmasked=unmasked) is not stage:
            return text
        if stage is Treatment.WITHHOLD:
            changed += 1
            return WITHHELD
        if stage is Treatment.TRUNCATE and len(text) > TRUNCATE_AT:
            changed += 1
            return text[:TRUNCATE_AT].rstrip() + "…"
        return text

    return map_strings(payload, one), changed
