"""Context words near a candidate span, used to classify look-alike digit strings (BVN vs NIN vs phone)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .models import PiiKind

_I = re.IGNORECASE

# Labels usually precede values ("BVN: 22..."), so the window before is wider than the one after.
WINDOW_BEFORE = 48
WINDOW_AFTER = 32
# A label after the value is weaker evidence than one before it.
_AFTER_PENALTY = 8
# Context does not carry across a sentence end or a blank line ("... born 1990. Meeting on 2024-04-12").
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[A-Z])|\n[ \t]*\n")

# Cue phrases per kind (regex bodies). Wrapped below in (?<!\w)...(?!\w) rather than \b...\b: with a
# look-behind first the engine rejects mid-word positions immediately, about 3x faster on long text.
_CUES: dict[PiiKind, str] = {
    PiiKind.BVN: r"bvn|bank\s+verification",
    PiiKind.NIN: r"nin|national\s+identi(?:fication|ty)|nimc|national\s+id",
    PiiKind.PHONE: r"phone|tel|telephone|mobile|cell|call|calls|whatsapp|sms|msisdn|contact|mob|reach",
    PiiKind.BANK_ACCOUNT: r"account|acct|acc|a/c|nuban|routing|sort\s*code|aba|rtn|bank\s+details",
    PiiKind.SSN: r"ssn|social\s+security",
    PiiKind.PASSPORT: r"passport",
    PiiKind.DATE_OF_BIRTH: r"born|dob|d\.o\.b|date\s+of\s+birth|birth\s*date|birthday",
    PiiKind.CARD_NUMBER: r"card|cards|pan|visa|mastercard|verve|amex|debit|credit",
}
CONTEXT_WORDS: dict[PiiKind, re.Pattern[str]] = {
    k: re.compile(rf"(?<!\w)(?:{body})(?!\w)", _I) for k, body in _CUES.items()
}
_ANY_CONTEXT = re.compile(
    r"(?<!\w)(?:" + "|".join(f"(?P<{k.value}>{body})" for k, body in _CUES.items()) + r")(?!\w)", _I
)


def context_distance(
    text: str, start: int, end: int, kind: PiiKind, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER
) -> int | None:
    """Distance in chars from the span to the closest context word for `kind`, or None if none in window."""
    pattern = CONTEXT_WORDS[kind]
    best: int | None = None
    lo = max(0, start - before)
    for m in pattern.finditer(text, lo, start):
        if _BOUNDARY.search(text, m.end(), start) is None:
            best = start - m.end()  # later matches are closer; keep the last one
    m = pattern.search(text, end, min(len(text), end + after))
    if m is not None and _BOUNDARY.search(text, end, m.start()) is None:
        d = m.start() - end + _AFTER_PENALTY
        if best is None or d < best:
            best = d
    return best


def has_context(text: str, start: int, end: int, kind: PiiKind, **kw: int) -> bool:
    """True when a context word for `kind` occurs in the window around the span."""
    return context_distance(text, start, end, kind, **kw) is not None


def ranked_context(text: str, start: int, end: int, kinds: tuple[PiiKind, ...]) -> list[PiiKind]:
    """Kinds (among `kinds`) with a context word in the window, closest first; ties keep `kinds` order."""
    best: dict[str, int] = {}
    lo = max(0, start - WINDOW_BEFORE)
    for m in _ANY_CONTEXT.finditer(text, lo, start):
        if _BOUNDARY.search(text, m.end(), start) is None:
            best[m.lastgroup or ""] = start - m.end()
    hi = min(len(text), end + WINDOW_AFTER)
    for m in _ANY_CONTEXT.finditer(text, end, hi):
        if _BOUNDARY.search(text, end, m.start()) is not None:
            break
        d = m.start() - end + _AFTER_PENALTY
        name = m.lastgroup or ""
        if d < best.get(name, d + 1):
            best[name] = d
    ranked = [(best[k.value], order, k) for order, k in enumerate(kinds) if k.value in best]
    ranked.sort()
    return [k for _, _, k in ranked]


def token_matches(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """Like ``pattern.finditer`` but only matches that start at a token boundary.

    Equivalent to a leading ``(?<!\\w)``, which would stop the regex engine from skipping ahead on the
    pattern's first character and makes scans several times slower.
    """
    pos = 0
    n = len(text)
    while pos <= n:
        m = pattern.search(text, pos)
        if m is None:
            return
        s = m.start()
        if s > 0 and (text[s - 1].isalnum() or text[s - 1] == "_"):
            pos = s + 1
            continue
        yield m
        pos = m.end() if m.end() > s else s + 1


def context_windows(
    text: str, kind: PiiKind, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER
) -> list[tuple[int, int]]:
    """Merged (start, end) ranges that could hold a value within reach of a `kind` cue word.

    Lets context-gated recognisers (dates of birth, passports) scan a few hundred characters instead of
    the whole text. Padding keeps values that straddle a window edge intact.
    """
    pad = 40
    out: list[tuple[int, int]] = []
    for m in CONTEXT_WORDS[kind].finditer(text):
        lo, hi = max(0, m.start() - after - pad), min(len(text), m.end() + before + pad)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
