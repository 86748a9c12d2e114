"""Context words near a candidate span, used to classify look-alike digit strings (BVN vs NIN vs phone)."""

from __future__ import annotations

import re

from .models import PiiKind

_I = re.IGNORECASE

# Labels usually precede values ("BVN: 22..."), so the window before is wider than the one after.
WINDOW_BEFORE = 48
WINDOW_AFTER = 32
# A label after the value is weaker evidence than one before it.
_AFTER_PENALTY = 8

CONTEXT_WORDS: dict[PiiKind, re.Pattern[str]] = {
    PiiKind.BVN: re.compile(r"\bbvn\b|\bbank\s+verification\b", _I),
    PiiKind.NIN: re.compile(r"\bnin\b|\bnational\s+identi(?:fication|ty)\b|\bnimc\b|\bnational\s+id\b", _I),
    PiiKind.PHONE: re.compile(
        r"\b(?:phone|tel|telephone|mobile|cell|call|calls|whatsapp|sms|msisdn|contact|mob|reach)\b", _I
    ),
    PiiKind.BANK_ACCOUNT: re.compile(
        r"\b(?:account|acct|acc|a/c|nuban|routing|sort\s*code|aba|rtn|bank\s+details)\b", _I
    ),
    PiiKind.SSN: re.compile(r"\bssn\b|\bsocial\s+security\b|\bss#", _I),
    PiiKind.PASSPORT: re.compile(r"\bpassport\b", _I),
    PiiKind.DATE_OF_BIRTH: re.compile(
        r"\bborn\b|\bdob\b|\bd\.o\.b\b|\bdate\s+of\s+birth\b|\bbirth\s*date\b|\bbirthday\b", _I
    ),
    PiiKind.CARD_NUMBER: re.compile(r"\b(?:card|cards|pan|visa|mastercard|verve|amex|debit|credit)\b", _I),
}


def context_distance(
    text: str, start: int, end: int, kind: PiiKind, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER
) -> int | None:
    """Distance in chars from the span to the closest context word for `kind`, or None if none in window."""
    pattern = CONTEXT_WORDS[kind]
    best: int | None = None
    lo = max(0, start - before)
    for m in pattern.finditer(text, lo, start):
        best = start - m.end()  # later matches are closer; keep the last one
    m = pattern.search(text, end, min(len(text), end + after))
    if m is not None:
        d = m.start() - end + _AFTER_PENALTY
        if best is None or d < best:
            best = d
    return best


def has_context(text: str, start: int, end: int, kind: PiiKind, **kw: int) -> bool:
    """True when a context word for `kind` occurs in the window around the span."""
    return context_distance(text, start, end, kind, **kw) is not None


def ranked_context(text: str, start: int, end: int, kinds: tuple[PiiKind, ...]) -> list[PiiKind]:
    """Kinds with a context word in the window, closest first."""
    found: list[tuple[int, int, PiiKind]] = []
    for order, kind in enumerate(kinds):
        d = context_distance(text, start, end, kind)
        if d is not None:
            found.append((d, order, kind))
    found.sort()
    return [k for _, _, k in found]
