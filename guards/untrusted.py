"""Free text from the stores is data, not instructions: delimit it so an agent does not obey it.

Every string of a tool's output is wrapped as `«data»…«/data»` by default. Only values that cannot carry
instructions stay bare:

* values that are, in full, a UUID, an ISO 8601 date or timestamp, or a number (whatever the field), and
* values of the identifier, enum, code and cursor fields in `BARE_FIELDS` (ids, status, kind, currency,
  cursors...), and only when the value is one short identifier-like token that does not look like an
  injection. Anything else in such a field (a planted sentence in `status`) is wrapped like free text.
* values of the link fields in `LINK_FIELDS` (a download link the server signed: its own download route or a
  presigned S3 URL) that are, in full, one https URL (or http to localhost: the local stack's server has no TLS)
  without spaces or quotes.

So a new output field is delimited unless someone adds it to the allow-list on purpose, and enum, UUID and
date-time values still validate against the published output schemas.
"""

from __future__ import annotations

import re
from typing import Any

from guards import shapes
from guards.payload import map_strings

OPEN = "«data»"
CLOSE = "«/data»"

#: Output fields whose values are identifiers, enum values, codes, cursors or timestamps (never prose).
BARE_FIELDS = frozenset(
    {
        # identifiers
        "id", "transaction_id", "user_id", "wallet_id", "report_id", "plan_id", "step_id", "item_id",
        "dispute_id", "query_id", "conversation_id", "feedback_id", "citation", "source_id", "request_id",
        "actor_user_id", "counterparty_user_id", "account_number_last4", "reference", "document_id",
        # enums and codes
        "kind", "status", "direction", "entry_type", "doc_type", "decision", "actor_role", "source",
        "from_status", "to_status", "channel", "outcome", "label", "mode", "bureau", "country", "score_model",
        "account_type", "factor", "currency", "dest_currency", "corridor", "payment_history", "reason",
        "counterparty_type", "sell_currency", "buy_currency",
        # numbers and timestamps carried as strings
        "fx_rate", "created_at", "updated_at", "completed_at", "fx_rate_observed_at", "valid_from", "pulled_at",
        "opened_on", "closed_on", "reported_on", "as_of", "due_on", "opened_at", "resolved_at", "at", "sent_at",
        "received_at", "occurred_at", "day",
        # cursors
        "next_cursor", "cursor",
    }
)

#: Output fields holding a link the server made (get_document_link's download-route or presigned URL).
LINK_FIELDS = frozenset({"url"})
_LINK = re.compile(r"(https://[A-Za-z0-9.-]{1,253}|http://localhost)(:\d{1,5})?/[A-Za-z0-9._~/%-]{0,1024}(\?[A-Za-z0-9._~%=&-]{0,2048})?")

# One short token: letters, digits and a few joiners (snake_case enums, ISO codes, ids, cursors).
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:#+\-=/]{0,127}")
# Values that are data by their shape alone, in any field.
_SHAPED = re.compile(rf"{shapes.UUID}|{shapes.ISO_DATE}({shapes.ISO_TIME})?"  # UUID, ISO date / date-time
                     r"|[+-]?\d{1,30}(\.\d{1,30})?")  # number

# Markers an attacker might plant to close our delimiter early or fake a role switch.
_SPOOF = re.compile(r"«\s*/?\s*data\s*»", re.IGNORECASE)

INJECTION_HINTS = re.compile(
    r"(ignore (all |any )?(previous|prior|above) (instructions|prompts)|disregard .{0,30}instructions|"
    r"\bsystem\s*:|\bassistant\s*:|you are now|reveal (all|every)|print (all|every)|exfiltrate|"
    r"<\s*/?\s*(system|instructions?)\s*>)",
    re.IGNORECASE,
)


def wrap(text: str) -> str:
    """Delimit one free-text value; any delimiter inside it is neutralised first."""
    return f"{OPEN}{_SPOOF.sub('[delimiter removed]', text)}{CLOSE}"


def looks_like_injection(text: str) -> bool:
    return bool(INJECTION_HINTS.search(text))


def stays_bare(key: str | None, value: str) -> bool:
    """Whether `value` (under field `key`) is an identifier, enum value, number or timestamp, not text."""
    if not value or _SHAPED.fullmatch(value):
        return True
    if key in LINK_FIELDS:
        return bool(_LINK.fullmatch(value)) and not looks_like_injection(value)
    return key in BARE_FIELDS and bool(_TOKEN.fullmatch(value)) and not looks_like_injection(value)


def wrap_free_text(value: Any) -> tuple[Any, int]:
    """Wrap every string of a nested structure unless it stays bare; returns (value, how many looked like
    injections). Dict keys are ours (field names, PII kinds) and are left alone."""
    flagged = 0

    def one(key: str | None, text: str) -> str:
        nonlocal flagged
        if stays_bare(key, text):
            return text
        if looks_like_injection(text):
            flagged += 1
        return wrap(text)

    return map_strings(value, one), flagged
