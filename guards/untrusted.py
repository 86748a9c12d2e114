"""Free text from the stores is data, not instructions: delimit it so an agent does not obey it."""

from __future__ import annotations

import re
from typing import Any

OPEN = "«data»"
CLOSE = "«/data»"

#: Output fields that hold free text written by people or bureaus (never by us).
FREE_TEXT_FIELDS = frozenset(
    {
        "description",
        "memo",
        "note",
        "notes",
        "remarks",
        "remark",
        "comment",
        "comments",
        "body",
        "letter",
        "text",
        "content",
        "reason",
        "message",
        "counterparty_name",
        "narrative",
        "summary",
        "details",
        "resolution",
        "bureau_response",
        "title",
    }
)

# A single snake_case token (an enum value such as a dispute reason) cannot carry instructions.
_ENUM_TOKEN = re.compile(r"[a-z][a-z0-9_]{0,40}")

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


def wrap_free_text(value: Any) -> tuple[Any, int]:
    """Wrap every free-text field in a nested structure; returns (value, how many looked like injections)."""
    flagged = 0

    def walk(v: Any, key: str | None) -> Any:
        nonlocal flagged
        if isinstance(v, dict):
            return {k: walk(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, key) for x in v]
        if isinstance(v, str) and key in FREE_TEXT_FIELDS and v and not _ENUM_TOKEN.fullmatch(v):
            if looks_like_injection(v):
                flagged += 1
            return wrap(v)
        return v

    return walk(value, None), flagged
