"""Caller-supplied values: names/addresses to always redact, and values that must never be redacted.

Matching is token-based (dict lookups on case-folded word tokens) rather than one big regex alternation:
the server may pass thousands of names, and an alternation is tried branch by branch at every word start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

# COMMON_NAME_WORDS: name parts that are also everyday English words ("Will", "Grace"), matched only when
# capitalised in the text.
from .kinds.person.lexicon import COMMON_NAME_WORDS
from .models import Candidate, PiiKind
from .normalise import normalise as _fold

# Letters/digits plus combining marks, so "Ọ̀la" (no precomposed form) stays one token.
_TOKEN = re.compile(r"[^\W_](?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])*")
# Between two tokens of one known value: spaces, commas, hyphens, apostrophes, dots ("Okonkwo-Eze", "P.O.").
_GAP_CHARS = frozenset(" \t\r\n,.-'’/")
_MAX_GAP = 3
_WS = re.compile(r"\s+")
_EDGE_PUNCT = " \t\r\n.,;:'\"()[]{}"


def normalise(value: str) -> str:
    """Case-folded, whitespace-collapsed, edge-punctuation-stripped form used for comparisons."""
    return _WS.sub(" ", value.strip(_EDGE_PUNCT)).casefold()


def _tokens(value: str) -> tuple[str, ...]:
    return tuple(t.casefold() for t in _TOKEN.findall(value))


def _clean(values: Iterable[str] | None) -> tuple[str, ...]:
    # Folded like the text the engine scans (NFKC, no zero-width characters), or a stored name with a
    # decomposed accent would never match.
    if not values:
        return ()
    return tuple(sorted({_WS.sub(" ", f.strip()) for v in values if v and (f := _fold(v).text).strip()}))


@dataclass(frozen=True, slots=True)
class _Entry:
    tokens: tuple[str, ...]
    kind: PiiKind
    score: float
    recognizer: str
    needs_capital: bool


@dataclass(frozen=True)
class KnownValues:
    """Index of known names/addresses plus the allow list. Build with :func:`compile_known`."""

    index: dict[str, tuple[_Entry, ...]] = field(default_factory=dict)  # first token -> entries, longest first
    allowed: frozenset[str] = frozenset()
    allowed_name_parts: frozenset[str] = frozenset()

    def find(self, text: str) -> Iterator[Candidate]:
        """Occurrences of known names (full, or any part of >= 3 letters) and known addresses."""
        if not self.index:
            return
        toks = [(m.start(), m.end(), m.group().casefold()) for m in _TOKEN.finditer(text)]
        n = len(toks)
        i = 0
        while i < n:
            hit = self._match_at(text, toks, i)
            if hit is None:
                i += 1
                continue
            k = len(hit.tokens)
            yield Candidate(hit.kind, toks[i][0], toks[i + k - 1][1], hit.score, hit.recognizer)
            i += k

    def _match_at(self, text: str, toks: list[tuple[int, int, str]], i: int) -> _Entry | None:
        for ent in self.index.get(toks[i][2], ()):
            k = len(ent.tokens)
            if i + k > len(toks):
                continue
            if ent.needs_capital and not text[toks[i][0]].isupper():
                continue
            for off in range(1, k):
                if toks[i + off][2] != ent.tokens[off]:
                    break
                gap = text[toks[i + off - 1][1] : toks[i + off][0]]
                if len(gap) > _MAX_GAP or not _GAP_CHARS.issuperset(gap):
                    break
            else:
                return ent
        return None

    def is_allowed(self, kind: PiiKind, value: str) -> bool:
        """True when `value` (a detected span) is on the allow list and must stay visible."""
        if not self.allowed:
            return False
        norm = normalise(value)
        if norm in self.allowed:
            return True
        digits = "".join(c for c in value if c.isdigit())
        if len(digits) >= 7 and digits in self.allowed:
            return True
        if kind is PiiKind.PERSON:
            words = _tokens(value)
            return bool(words) and all(w in self.allowed_name_parts for w in words)
        return False


EMPTY = KnownValues()


# Values of name fields that say "nobody in particular"; as known names they would mask ordinary words.
_PLACEHOLDERS = frozenset({"unknown", "n/a", "na", "none", "null", "nil", "self", "me", "customer", "user", "test"})


@lru_cache(maxsize=256)
def _compile(
    names: tuple[str, ...], addresses: tuple[str, ...], allow: tuple[str, ...], field_names: tuple[str, ...] = ()
) -> KnownValues:
    allowed_norm = {normalise(a) for a in allow}
    allowed_parts = {t for a in allow for t in _tokens(a) if len(t) >= 2}
    allowed_digits = {d for a in allow if len(d := "".join(c for c in a if c.isdigit())) >= 7}

    best: dict[tuple[str, ...], _Entry] = {}

    def add(tokens: tuple[str, ...], kind: PiiKind, score: float, recognizer: str) -> None:
        if not tokens or (len(tokens) == 1 and len(tokens[0]) < 2):
            return
        risky = len(tokens) == 1 and tokens[0] in COMMON_NAME_WORDS
        entry = _Entry(tokens, kind, score, recognizer, risky)
        if tokens not in best or best[tokens].score < score:
            best[tokens] = entry

    def add_name(name: str, recognizer: str, capitalised_parts: bool) -> None:
        norm = normalise(name)
        if norm in allowed_norm or (capitalised_parts and norm in _PLACEHOLDERS):
            return
        add(_tokens(name), PiiKind.PERSON, 0.92, recognizer)
        parts = name.split()
        if len(parts) > 1:
            for part in parts:
                toks = _tokens(part)
                if capitalised_parts and not part[:1].isupper():
                    continue
                if len(part.strip(".")) >= 3 and not all(t in allowed_parts for t in toks):
                    add(toks, PiiKind.PERSON, 0.85, recognizer + "_part")

    for name in names:
        add_name(name, "known_name", False)
    # Names from a row's own person fields: they may be labels ("Bank transfer in") when the row does not
    # say what the counterparty is, so only capitalised words count as name parts.
    for name in field_names:
        add_name(name, "row_name", True)
    for address in addresses:
        if normalise(address) not in allowed_norm:
            add(_tokens(address), PiiKind.ADDRESS, 0.92, "known_address")

    index: dict[str, list[_Entry]] = {}
    for entry in best.values():
        index.setdefault(entry.tokens[0], []).append(entry)
    return KnownValues(
        index={k: tuple(sorted(v, key=lambda e: -len(e.tokens))) for k, v in index.items()},
        allowed=frozenset(allowed_norm | allowed_digits),
        allowed_name_parts=frozenset(allowed_parts),
    )


def compile_known(
    known_names: Iterable[str] | None = None,
    known_addresses: Iterable[str] | None = None,
    allow_names: Iterable[str] | None = None,
    field_names: Iterable[str] | None = None,
) -> KnownValues:
    """Compile (and cache) the index for the given value lists (`field_names`: names found in the
    payload's own person fields, see :func:`guards.redaction.redact_value`)."""
    names, addresses, allow = _clean(known_names), _clean(known_addresses), _clean(allow_names)
    fields = _clean(field_names)
    if not (names or addresses or allow or fields):
        return EMPTY
    return _compile(names, addresses, allow, fields)
