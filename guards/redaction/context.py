"""Context words near a candidate span, used to classify look-alike digit strings (BVN vs NIN vs phone)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

_I = re.IGNORECASE

# Labels usually precede values ("BVN: 22..."), so the window before is wider than the one after.
WINDOW_BEFORE = 48
WINDOW_AFTER = 32
# A label after the value is weaker evidence than one before it.
_AFTER_PENALTY = 8
# Context does not carry across a sentence end or a blank line ("... born 1990. Meeting on 2024-04-12").
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[A-Z])|\n[ \t]*\n")



_CUES: dict[str, str] = {}


def register_cues(cues: dict[str, str]) -> None:
    """Install each kind's cue regex body ("bvn|bank\\s+verification"); `guards.redaction.kinds` calls this
    with its units' cues (the units import this module, so it cannot import them)."""
    _CUES.clear()
    _CUES.update(cues)
    _tables.cache_clear()


@cache
def _tables() -> tuple[dict[str, re.Pattern[str]], re.Pattern[str]]:
    """Per-kind cue patterns and one combined pattern.

    Wrapped in (?<!\\w)...(?!\\w) rather than \\b...\\b: with a look-behind first the engine rejects
    mid-word positions immediately, about 3x faster on long text.
    """
    per_kind = {k: re.compile(rf"(?<!\w)(?:{body})(?!\w)", _I) for k, body in _CUES.items()}
    combined = re.compile(r"(?<!\w)(?:" + "|".join(f"(?P<{k}>{body})" for k, body in _CUES.items()) + r")(?!\w)", _I)
    return per_kind, combined


def cue_pattern(kind: str) -> re.Pattern[str]:
    return _tables()[0][kind]


def context_distance(
    text: str, start: int, end: int, kind: str, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER
) -> int | None:
    """Distance in chars from the span to the closest context word for `kind`, or None if none in window."""
    pattern = cue_pattern(kind)
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


def has_context(text: str, start: int, end: int, kind: str, **kw: int) -> bool:
    """True when a context word for `kind` occurs in the window around the span."""
    return context_distance(text, start, end, kind, **kw) is not None


def ranked_context(text: str, start: int, end: int, kinds: tuple[str, ...]) -> list[str]:
    """Kinds (among `kinds`) with a context word in the window, closest first; ties keep `kinds` order."""
    best: dict[str, int] = {}
    lo = max(0, start - WINDOW_BEFORE)
    combined = _tables()[1]
    for m in combined.finditer(text, lo, start):
        if _BOUNDARY.search(text, m.end(), start) is None:
            best[m.lastgroup or ""] = start - m.end()
    hi = min(len(text), end + WINDOW_AFTER)
    for m in combined.finditer(text, end, hi):
        if _BOUNDARY.search(text, end, m.start()) is not None:
            break
        d = m.start() - end + _AFTER_PENALTY
        name = m.lastgroup or ""
        if d < best.get(name, d + 1):
            best[name] = d
    ranked = [(best[k], order, k) for order, k in enumerate(kinds) if k in best]
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
    text: str, kind: str, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER
) -> list[tuple[int, int]]:
    """Merged (start, end) ranges that could hold a value within reach of a `kind` cue word.

    Lets context-gated recognisers (dates of birth, passports) scan a few hundred characters instead of
    the whole text. Padding keeps values that straddle a window edge intact.
    """
    pad = 40
    out: list[tuple[int, int]] = []
    for m in cue_pattern(kind).finditer(text):
        lo, hi = max(0, m.start() - after - pad), min(len(text), m.end() + before + pad)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
