"""Runs the recognisers, resolves overlaps, applies the policy."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from guards import shapes
from guards.untrusted import CLOSE, OPEN, stays_bare

from . import digits
from .kinds import FIELD_HINTS, UNITS
from .kinds.person import detect as person_detect
from .known_values import KnownValues, compile_known
from .masking import MASK_ALL, RedactionPolicy
from .models import Action, Candidate, Finding, PiiKind, Redaction
from .normalise import Normalised, normalise

_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
# Recognisers by what they need to read: a digit in the text (most identifiers; skipping them on digit-free
# field values matters for redact_value), any text (emails, IPs, crypto, spelled-out phones), or prose
# (person names: free text only, never ids, amounts, enums or timestamps).
_WITH_DIGIT = (digits.find_digit_runs, digits.find_separated_digits, *(r for u in UNITS for r in u.recognizers))
_ANY_TEXT = tuple(r for u in UNITS for r in u.digitless)
_PROSE = tuple(r for u in UNITS for r in u.prose)
# Huge texts are read in chunks (with an overlap so a value on a boundary is seen whole by one of them):
# regex work stays linear and each chunk's candidate lists stay small.
CHUNK_CHARS = 16_384
_OVERLAP = 256
# A whole value that is a UUID or an ISO-8601 timestamp (date AND time: a bare date may be a birth date) holds
# nothing to redact: skipping the recognisers for it is most of the cost of a typical record.
_BARE_ID = re.compile(f"{shapes.UUID}|{shapes.ISO_DATE}{shapes.ISO_TIME}")
# Record ids are UUIDs; their hex groups can pass a checksum by chance (1 in 97 for IBAN's mod-97), and an
# agent needs them intact to call the next tool, so no finding may overlap one.
_UUID = re.compile(rf"(?<![0-9A-Za-z]){shapes.UUID}(?![0-9A-Za-z])")
# The engine's own masks ("[PERSON]", "[CARD_NUMBER:1a2b3c4d]") in a text redacted before (the trace recorder
# re-redacts an answer with mask-everything): the recognisers read each as blanks, so redacting twice gives what
# redacting once gave ("to [PERSON]" stays, not "to [[PERSON]]", and is not counted again). Blanks, not a
# skipped span: a name written next to a literal mask is still read on its own.
_MASK = re.compile(r"\[(?:{})(?::[0-9a-f]+)?\]".format("|".join(re.escape(k.value) for k in PiiKind)))


def _scan_text(t: str) -> str:
    """`t` with each of the engine's masks blanked out (same length, so offsets still index `t`)."""
    return _MASK.sub(lambda m: " " * (m.end() - m.start()), t) if "[" in t else t
# Short values read without prose (ids, enum values, codes, numbers: what the delimiter leaves bare) repeat from
# call to call ("completed", "NGN", "debit"). What the recognisers find in one depends on its text alone, so that
# is kept (bounded); the call's known values and allow list are still applied to it every time.
_BARE_MEMO_CHARS = 128
_NO_KNOWN = KnownValues()


@lru_cache(maxsize=8192)
def _bare_scan(text: str) -> tuple[Normalised, tuple[Candidate, ...], tuple[tuple[int, int], ...]]:
    """(normalised text, the recognisers' candidates without prose, the UUID spans) of one short value."""
    norm = normalise(text)
    found = _collect(_scan_text(norm.text), _NO_KNOWN, None, prose=False)
    return norm, tuple(found), tuple(m.span() for m in _UUID.finditer(norm.text))


def _chunks(text: str) -> list[tuple[int, int]]:
    """(start, end) windows of at most CHUNK_CHARS, cut at whitespace, overlapping by _OVERLAP."""
    if len(text) <= CHUNK_CHARS:
        return [(0, len(text))]
    out = []
    start = 0
    while start < len(text):
        end = min(len(text), start + CHUNK_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start + CHUNK_CHARS // 2, end)
            end = cut if cut > 0 else end
        out.append((start, end))
        if end >= len(text):
            break
        start = max(end - _OVERLAP, start + 1)
    return out


def _collect(text: str, known: KnownValues, kinds: frozenset[PiiKind] | None, prose: bool = True) -> list[Candidate]:
    cands: list[Candidate] = []
    run_prose = prose and (kinds is None or PiiKind.PERSON in kinds) and _LETTER.search(text) is not None
    with person_detect.model_budget():
        for lo, hi in _chunks(text):
            chunk = text[lo:hi] if (lo, hi) != (0, len(text)) else text
            found: list[Candidate] = []
            if _DIGIT.search(chunk) is not None:
                for rec in _WITH_DIGIT:
                    found.extend(rec(chunk))
            for rec in _ANY_TEXT:
                found.extend(rec(chunk))
            if run_prose:
                taken = [(c.start, c.end) for c in found]
                for prose in _PROSE:
                    found.extend(prose(chunk, taken))
            if lo:
                found = [Candidate(c.kind, c.start + lo, c.end + lo, c.score, c.recognizer) for c in found]
            cands.extend(found)
    cands.extend(known.find(text))
    if kinds is not None:
        cands = [c for c in cands if c.kind in kinds]
    ids = [m.span() for m in _UUID.finditer(text)]
    if ids:
        cands = [c for c in cands if not any(c.start < e and s < c.end for s, e in ids)]
    return cands


def resolve_overlaps(cands: Iterable[Candidate]) -> list[Candidate]:
    """Keep non-overlapping spans, preferring higher score, then longer span, then earlier start."""
    ordered = sorted(cands, key=lambda c: (-c.score, -(c.end - c.start), c.start))
    starts: list[int] = []
    ends: list[int] = []
    kept: list[Candidate] = []
    for c in ordered:
        if c.end <= c.start:
            continue
        i = bisect.bisect_left(starts, c.start)
        # Accepted spans are disjoint and sorted, so only the neighbours can overlap.
        if i > 0 and ends[i - 1] > c.start:
            continue
        if i < len(starts) and starts[i] < c.end:
            continue
        starts.insert(i, c.start)
        ends.insert(i, c.end)
        kept.append(c)
    kept.sort(key=lambda c: c.start)
    return kept


def _redact(
    text: str,
    policy: RedactionPolicy,
    known: KnownValues,
    kinds: frozenset[PiiKind] | None = None,
    hint: PiiKind | None = None,
    prose: bool = True,
) -> Redaction:
    s, e = len(text) - len(text.lstrip()), len(text.rstrip())
    if hint is not None and text.startswith(OPEN, s) and text.endswith(CLOSE, s + len(OPEN), e):
        # A delimited value (the output guard marks untrusted text): the finding is its content; the marks stay,
        # so a second pass over it finds the mask inside and changes nothing.
        s, e = s + len(OPEN), e - len(CLOSE)
    if hint is not None and e > s and (kinds is None or hint in kinds):
        # A field named e.g. "full_name" holds exactly one value of that kind: the whole string is the
        # finding (nothing inside it can win against it, so the recognisers are skipped).
        value = normalise(text[s:e]).text
        if known.is_allowed(hint, value) or _MASK.fullmatch(value):
            return Redaction(text=text, findings=[])
        norm = Normalised(text)
        cands = [Candidate(hint, s, e, 1.0, "field_hint")]
    elif _BARE_ID.fullmatch(text):
        return Redaction(text=text, findings=[])
    elif not prose and kinds is None and len(text) <= _BARE_MEMO_CHARS:
        # The same candidates, in the same order, as _collect would give (recognisers, then known values).
        norm, found, ids = _bare_scan(text)
        t = norm.text
        cands = [*found, *(c for c in known.find(_scan_text(t)) if not any(c.start < e and s < c.end for s, e in ids))]
        if known.allowed:
            cands = [c for c in cands if not known.is_allowed(PiiKind(c.kind), t[c.start : c.end])]
    else:
        # Recognisers see the normalised text (look-alike spaces, dashes, digits, '@' folded to ASCII).
        norm = normalise(text)
        t = norm.text
        cands = _collect(_scan_text(t), known, kinds, prose)
        if known.allowed:
            cands = [c for c in cands if not known.is_allowed(PiiKind(c.kind), t[c.start : c.end])]
    findings: list[Finding] = []
    pieces: list[str] = []
    pos = 0
    # Offsets always index the original text; the output is assembled left to right in one pass.
    for c in resolve_overlaps(cands):
        start, end = norm.span(c.start, c.end)
        start = max(start, pos)  # two findings inside one expanded character (a ligature) cannot both own it
        if end <= start:
            continue
        kind = PiiKind(c.kind)
        action = policy.action_for(kind)
        findings.append(Finding(kind=kind, start=start, end=end, score=c.score, recognizer=c.recognizer,
                                action=action))
        pieces.append(text[pos:start])
        # Partial and hashed forms use the normalised value, so "4111 1111..." with no-break spaces shows
        # and hashes exactly like its ASCII spelling; KEEP gives back the original characters.
        value = text[start:end] if action is Action.KEEP else norm.text[c.start : c.end]
        pieces.append(policy.replacement(kind, value, action))
        pos = end
    pieces.append(text[pos:])
    return Redaction(text="".join(pieces), findings=findings)


def redact(
    text: str,
    policy: RedactionPolicy | None = None,
    *,
    known_names: Iterable[str] | None = None,
    known_addresses: Iterable[str] | None = None,
    allow_names: Iterable[str] | None = None,
    kinds: Iterable[PiiKind] | None = None,
) -> Redaction:
    """Detect PII in `text` and replace it according to `policy` (default: mask everything as ``[KIND]``).

    `known_names` / `known_addresses` are always redacted where they occur (case-insensitive, word
    boundaries; each part of >= 3 letters of a multi-word name too). `allow_names` lists values that stay
    visible whatever their kind (e.g. the caller's own name, phone or email). `kinds` restricts detection.
    """
    known = compile_known(known_names, known_addresses, allow_names)
    kind_set = frozenset(kinds) if kinds is not None else None
    return _redact(text, policy or MASK_ALL, known, kind_set)


# --- structured values ---------------------------------------------------------------------------

_FIELD_HINTS = FIELD_HINTS
_KEY_NORM = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def field_hint(key: object) -> PiiKind | None:
    """Kind implied by a dict key such as ``"phoneNumber"`` or ``"date-of-birth"``, if any."""
    return _field_hint(key) if isinstance(key, str) else None


@lru_cache(maxsize=4096)
def _norm_key(key: str) -> str:
    return _KEY_NORM.sub("_", _CAMEL.sub("_", key).lower()).strip("_")


@lru_cache(maxsize=4096)
def _field_hint(key: str) -> PiiKind | None:
    return _FIELD_HINTS.get(_norm_key(key))


# Values of a sibling "<x>_type" key saying "<x>_name" is not a natural person (a shop, or a system label
# such as "Bank transfer in"). Anything else, or no such key, keeps the PERSON hint: the safe default.
_NOT_A_PERSON = frozenset({"merchant", "system"})


def _not_person_keys(d: dict[Any, Any]) -> frozenset[Any]:
    """Keys of `d` whose PERSON field hint is lifted by a sibling type, e.g. counterparty_type="merchant"."""
    out: set[Any] = set()
    types: dict[str, Any] | None = None
    for k in d:
        if field_hint(k) is not PiiKind.PERSON:
            continue
        base = _norm_key(k)
        if not base.endswith("_name"):
            continue
        if types is None:
            types = {_norm_key(t): val for t, val in d.items() if isinstance(t, str)}
        kind = types.get(base[: -len("_name")] + "_type")
        if isinstance(kind, str) and kind.strip().lower() in _NOT_A_PERSON:
            out.add(k)
    return frozenset(out)


def _row_names(value: Any, out: list[str]) -> None:
    """Collect the strings under person-name keys anywhere in `value` (honouring sibling types)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, dict):
        hints, named, person = _hints_of(value)
        if not person:  # no person-name field in this shape: only what is nested below can hold one
            for item in value.values():
                if not isinstance(item, str | int | float | bool | None):
                    _row_names(item, out)
            return
        skip = _not_person_keys(value) if named else frozenset()
        for (k, item), hint in zip(value.items(), hints, strict=True):
            if hint is PiiKind.PERSON and k not in skip:
                if isinstance(item, str):
                    if not _MASK.fullmatch(item.strip()):  # a name redacted before is no name to look for
                        out.append(item)
                    continue
                if isinstance(item, list | tuple | set | frozenset):
                    out.extend(x for x in item if isinstance(x, str) and not _MASK.fullmatch(x.strip()))
            if not isinstance(item, str | int | float | bool | None):
                _row_names(item, out)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            if not isinstance(item, str | int | float | bool | None):
                _row_names(item, out)


def _hints_of(d: dict[Any, Any]) -> tuple[tuple[PiiKind | None, ...], bool, bool]:
    keys = tuple(d)
    return _key_hints(keys) if len(keys) <= _SHAPE_KEYS else _key_hints.__wrapped__(keys)


#: Dicts with more keys than this (maps keyed by data, not records) are not remembered by their shape.
_SHAPE_KEYS = 64


@lru_cache(maxsize=1024)
def _key_hints(keys: tuple[Any, ...]) -> tuple[tuple[PiiKind | None, ...], bool, bool]:
    """(the field hint of each key, whether some key is a person-name field a sibling type may lift, whether some
    key is a person field at all) of a dict with these keys: the rows of a list share their keys, so each row's
    keys are looked at once per shape."""
    hints = tuple(field_hint(k) for k in keys)
    named = any(h is PiiKind.PERSON and _norm_key(k).endswith("_name") for k, h in zip(keys, hints, strict=True))
    return hints, named, PiiKind.PERSON in hints


#: Leaves that are never redacted (exact types: what `model_dump(mode="json")` gives); walks return them as they are.
_PLAIN = frozenset({int, float, bool, type(None)})


def redact_value(
    value: Any,
    policy: RedactionPolicy | None = None,
    *,
    known_names: Iterable[str] | None = None,
    known_addresses: Iterable[str] | None = None,
    allow_names: Iterable[str] | None = None,
) -> tuple[Any, dict[str, int]]:
    """Redact every string inside a nested dict/list/tuple/set/pydantic structure.

    Keys and non-string leaves are returned unchanged (pydantic models are dumped to plain data first).
    A string under a key that names a PII field (``email``, ``full_name``, ``bvn`` ...) is redacted as a
    whole even when no pattern matches it. The values of person-name fields (``counterparty_name``,
    ``beneficiary_name`` ...) also become known names for every string of the payload, so "Send to Peter"
    in a description is masked too (except names in `allow_names`). A sibling ``<x>_type`` of
    ``"merchant"`` or ``"system"`` (e.g. ``counterparty_type``) lifts the PERSON hint of ``<x>_name``: the
    value then goes through the recognisers and known names like free text. Returns
    ``(new_value, counts_by_kind)``.
    """
    row_names: list[str] = []
    _row_names(value, row_names)
    known = compile_known(known_names, known_addresses, allow_names, row_names)
    return _redact_tree(value, policy or MASK_ALL, known, {})


#: (string, its key, its field hint) -> (redacted text, kinds of its findings in order): one call's memo.
_Memo = dict[tuple[str, str | None, PiiKind | None], tuple[str, tuple[str, ...]]]


def _redact_tree(value: Any, pol: RedactionPolicy, known: KnownValues, memo: _Memo | None
                 ) -> tuple[Any, dict[str, int]]:
    """`redact_value`'s walk with its policy and known values. With `memo`, a string met again under the same key
    and hint (a page's currencies, corridors, days, statuses) reuses its first redaction and counts its findings
    again: within one call `_redact` is a function of exactly (text, hint, prose), prose of (key, text), so the
    output and the counts are those of redacting every string (tests/unit/test_redaction_memo.py)."""
    counts: dict[str, int] = {}

    def walk(v: Any, hint: PiiKind | None, key: Any = None) -> Any:
        if isinstance(v, str):
            if not v:
                return v
            k = key if isinstance(key, str) else None
            done = memo.get((v, k, hint)) if memo is not None else None
            if done is None:
                # Names are read in free text only: not in ids, enums, amounts or timestamps (what the
                # delimiter also leaves bare).
                r = _redact(v, pol, known, None, hint, not stays_bare(k, v))
                done = r.text, tuple(f.kind.value for f in r.findings)
                if memo is not None:
                    memo[v, k, hint] = done
            for kind in done[1]:
                counts[kind] = counts.get(kind, 0) + 1
            return done[0]
        if isinstance(v, BaseModel):
            return walk(v.model_dump(mode="python"), hint, key)
        if isinstance(v, dict):
            hints, named, _ = _hints_of(v)
            if named:
                skip = _not_person_keys(v)
                hints = tuple(None if k in skip else h for k, h in zip(v, hints, strict=True))
            return {k: item if type(item) in _PLAIN else walk(item, h, k)
                    for (k, item), h in zip(v.items(), hints, strict=True)}
        if isinstance(v, list):
            return [item if type(item) in _PLAIN else walk(item, hint, key) for item in v]
        if isinstance(v, tuple):
            return tuple(walk(item, hint, key) for item in v)
        if isinstance(v, set | frozenset):
            return type(v)(walk(item, hint, key) for item in v)
        return v

    return walk(value, None), counts
