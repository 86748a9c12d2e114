"""PASSPORT: letter-prefixed passport numbers near the word "passport" (all-digit ones come from the digit
classifier with the same cue)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..context import context_windows, has_context
from ..spec import Candidate, KindSpec

_PASSPORT = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]?\d{6,8}(?!\w)")


def find_passports(text: str) -> Iterator[Candidate]:
    """NG A12345678, US/GH/KE styles, within reach of a passport label."""
    for lo, hi in context_windows(text, "PASSPORT"):
        for m in _PASSPORT.finditer(text, lo, hi):
            if has_context(text, m.start(), m.end(), "PASSPORT"):
                yield Candidate("PASSPORT", m.start(), m.end(), 0.85, "passport_context")


SPEC = KindSpec("PASSPORT", recognizers=(find_passports,), cues=r"passport",
                field_hints=("passport", "passport_number", "passport_no"), tail=True)
