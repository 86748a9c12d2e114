r"""The cross-kind digit classifier: cards, SSNs and the bare 8-19 digit identifiers that share one shape
(BVN, NIN and NG phone numbers are all 11 digits) are told apart here, in one place, by checksums, prefix
tables, layout and the context words of each kind's unit.

Regexes are compiled once at import and use bounded quantifiers, so there is no catastrophic backtracking. They
open with a plain character class followed by a look-behind (``\d(?<![\w.]\d)`` rather than
``(?<![\w.])\d``): same meaning (token starts only), but the regex engine can then skip straight to candidate
first characters, which is 3-15x faster on long text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .context import has_context, ranked_context
from .kinds.card import business_label_before, is_card, labelled_not_card, luhn_ok
from .kinds.phone import NG_MOBILE_LOCAL, intl_digits_phone, local_phone_region, nanp_ok
from .kinds.ssn import ssn_ok
from .spec import Candidate

_NON_DIGIT = re.compile(r"\D+")


def _digits(s: str) -> str:
    return _NON_DIGIT.sub("", s)


# A run of digits optionally separated by single spaces or dashes. Not preceded by a word char, '.', '+'
# or another digit group, and not followed by a decimal part, so amounts like "150,000.00" never match.
_DIGIT_RUN = re.compile(r"\d(?<![\w.+/,]\d)(?<!\d[ -]\d)(?:[ -]?\d)*(?!\w|[.,]\d)")
_GROUP = re.compile(r"\d+")

# Classification order when several context words are equally close.
_BARE_CONTEXT_KINDS = ("BVN", "NIN", "SSN", "PASSPORT", "BANK_ACCOUNT", "PHONE", "CARD_NUMBER")
_CURRENCY_NEAR = re.compile(r"(?:₦|\$|£|€|\b(?:NGN|USD|GBP|EUR|GHS|KES|naira|cedis?|shillings?)\b)\s*$", re.I)
_CURRENCY_AFTER = re.compile(r"\s*(?:₦|\$|£|€|(?:NGN|USD|GBP|EUR|GHS|KES|naira|cedis?|shillings?)\b)", re.I)


def _amount_like(text: str, s: int, e: int) -> bool:
    """A currency right before or after the span: "NGN 12 345 678 901" / "12 345 678 901 naira"."""
    return _CURRENCY_NEAR.search(text[max(0, s - 8) : s]) is not None or _CURRENCY_AFTER.match(text, e) is not None


def _accepts(kind: str, digits: str, text: str = "", s: int = 0, e: int = 0) -> float | None:
    """Score for a bare digit string labelled as `kind` by nearby context, or None if the shape is wrong."""
    n = len(digits)
    if kind == "BVN" and n == 11:
        return 0.95 if digits.startswith("22") else 0.85
    if kind == "NIN" and n == 11:
        return 0.9
    if kind == "SSN" and n == 9 and ssn_ok(digits[:3], digits[3:5], digits[5:]):
        return 0.9
    if kind == "PASSPORT" and 8 <= n <= 9:
        return 0.85
    if kind == "BANK_ACCOUNT" and 8 <= n <= 18 and not NG_MOBILE_LOCAL.fullmatch(digits):
        # An 11-digit 0[789][01] number is never a NUBAN (10 digits); a nearby "account" is about something else.
        return 0.85
    if kind == "PHONE" and (
        (n in (10, 11) and (local_phone_region(digits) or (n == 10 and nanp_ok(digits))))
        or (11 <= n <= 13 and intl_digits_phone(digits))
    ):
        return 0.9
    if kind == "CARD_NUMBER" and 12 <= n <= 19 and luhn_ok(digits) and not (text and labelled_not_card(text, s, e)):
        # "card" context + Luhn covers networks missing from the IIN table (RuPay, Elo, ...).
        return 0.6
    return None


def _classify_bare(text: str, s: int, e: int, digits: str) -> Candidate | None:
    """Classify an unseparated run of 8-19 digits.

    With context words the closest plausible label wins. Without context the documented fallback is:
    11 digits -> PHONE if it matches NG mobile format (0[789][01]...), else BVN if it starts with 22,
    else NIN; 10 digits -> PHONE if it matches a GH/KE/GB national format; 12-13 digits with a known
    country code -> PHONE. Anything else is left alone (too many innocent look-alikes: timestamps, refs).
    """
    n = len(digits)
    before = text[max(0, s - 8) : s]
    if _CURRENCY_NEAR.search(before):
        return None
    for kind in ranked_context(text, s, e, _BARE_CONTEXT_KINDS):
        score = _accepts(kind, digits, text, s, e)
        if score is not None:
            return Candidate(kind, s, e, score, "digits_context")
    if business_label_before(text, s, goods_only=True):
        return None  # "tracking number 12345678901": labelled as something that is not personal data
    if n == 11:
        if NG_MOBILE_LOCAL.fullmatch(digits):
            return Candidate("PHONE", s, e, 0.6, "digits_bare")
        if digits.startswith("22"):
            return Candidate("BVN", s, e, 0.5, "digits_bare")
        return Candidate("NIN", s, e, 0.45, "digits_bare")
    if n == 10 and local_phone_region(digits):
        return Candidate("PHONE", s, e, 0.55, "digits_bare")
    if n in (12, 13) and intl_digits_phone(digits):
        return Candidate("PHONE", s, e, 0.6, "digits_bare")
    return None


_CARD_LAYOUTS = frozenset({(4, 6, 5), (4, 6, 4), (4, 3, 3, 3), (6, 10), (6, 12), (6, 13)})


def _card_layout(lengths: list[int]) -> bool:
    """4-4-4-4, 4-4-4-4-3, 4-4-4-7 ... (fours then a 1-7 digit tail), Amex 4-6-5, Diners 4-6-4, Verve 6-12/13."""
    if lengths[0] == 4 and 1 <= lengths[-1] <= 7 and all(n == 4 for n in lengths[1:-1]):
        return True
    return tuple(lengths) in _CARD_LAYOUTS


def find_digit_runs(text: str) -> Iterator[Candidate]:
    """Cards (Luhn + IIN), dashed SSNs, and bare long identifiers classified by context."""
    for m in _DIGIT_RUN.finditer(text):
        s, e = m.span()
        if e - s < 8:
            continue
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, s, e)]
        if len(groups) == 1:
            digits = text[s:e]
            if 12 <= len(digits) <= 19 and is_card(digits) and not labelled_not_card(text, s, e):
                yield Candidate("CARD_NUMBER", s, e, 0.95, "card_luhn_iin")
            elif len(digits) >= 8:
                c = _classify_bare(text, s, e, digits)
                if c is not None:
                    yield c
            continue
        yield from _multi_group(text, groups)


def _multi_group(text: str, groups: list[tuple[int, int]], bare_groups: bool = True) -> Iterator[Candidate]:
    """Stitch separated digit groups into SSNs, cards, labelled BVN/NIN and country-code phones.

    `bare_groups`: also classify each leftover long group on its own (off for runs joined by dots or
    slashes, where "12345678.50" is an amount, not an identifier followed by something).
    """
    used = [False] * len(groups)
    lengths = [b - a for a, b in groups]
    # SSN 123-45-6789 or 123.45.6789 (one repeated dash or dot), otherwise only with an SSN label.
    for i in range(len(groups) - 2):
        if lengths[i : i + 3] != [3, 2, 4] or any(used[i : i + 3]):
            continue
        (a, a2), (b, b2), (c, c2) = groups[i : i + 3]
        if not ssn_ok(text[a:a2], text[b:b2], text[c:c2]):
            continue
        sep = text[a2:b]
        formatted = sep == text[b2:c] and sep in ("-", ".")
        if formatted or has_context(text, a, c2, "SSN"):
            yield Candidate("SSN", a, c2, 0.9 if formatted else 0.85, "ssn")
            used[i : i + 3] = [True] * 3
    # Cards split into groups: the longest run of consecutive groups that validates and is laid out the way
    # cards are printed, so unrelated numbers in a table or list are not stitched into a "card".
    n = len(groups)
    i = 0
    while i < n:
        total = lengths[i]
        ends: list[int] = []
        j = i + 1
        while j < n and not used[j] and total + lengths[j] <= 19:
            total += lengths[j]
            if total >= 12 and _card_layout(lengths[i : j + 1]):
                ends.append(j)
            j += 1
        hit = None
        for j in reversed(ends):
            s, e = groups[i][0], groups[j][1]
            if is_card(_digits(text[s:e])):
                # Consumed either way: an order number laid out like a card is not re-read as anything else.
                if not labelled_not_card(text, s, e):
                    yield Candidate("CARD_NUMBER", s, e, 0.95, "card_luhn_iin")
                hit = j
                break
        if hit is None:
            i += 1
        else:
            used[i : hit + 1] = [True] * (hit + 1 - i)
            i = hit + 1
    # "BVN 221 2345 6789": 11 digits in groups are a BVN/NIN only when labelled as one.
    if not any(used):
        c = _grouped_national_id(text, groups, lengths)
        if c is not None:
            yield c
            return
    # "234 803 123 4567": a country-code-prefixed phone written with spaces but without the '+'.
    if not any(used) and 11 <= sum(lengths) <= 13:
        s, e = groups[0][0], groups[-1][1]
        if not _amount_like(text, s, e) and intl_digits_phone(_digits(text[s:e])):
            ctx = has_context(text, s, e, "PHONE")
            yield Candidate("PHONE", s, e, 0.9 if ctx else 0.6, "phone_intl_no_plus")
            return
    if not bare_groups:
        return
    # Whatever is left: long single groups are bare identifiers on their own.
    for idx, (s, e) in enumerate(groups):
        if used[idx] or e - s < 8:
            continue
        digits = text[s:e]
        if 12 <= len(digits) <= 19 and is_card(digits) and not labelled_not_card(text, s, e):
            yield Candidate("CARD_NUMBER", s, e, 0.95, "card_luhn_iin")
        else:
            c = _classify_bare(text, s, e, digits)
            if c is not None:
                yield c


def _grouped_national_id(text: str, groups: list[tuple[int, int]], lengths: list[int]) -> Candidate | None:
    """Leading groups holding exactly 11 digits, labelled BVN or NIN (closest label wins)."""
    total, j = 0, -1
    while total < 11 and j + 1 < len(lengths):
        j += 1
        total += lengths[j]
    if total != 11 or j < 1:
        return None
    s, e = groups[0][0], groups[j][1]
    if _amount_like(text, s, e):
        return None
    digits = _digits(text[s:e])
    for kind in ranked_context(text, s, e, _BARE_CONTEXT_KINDS):
        score = _accepts(kind, digits, text, s, e)
        if score is not None:
            return Candidate(kind, s, e, score, "digits_grouped_context") if kind in ("BVN", "NIN") else None
    return None


# Digit groups joined by separators _DIGIT_RUN does not take: dots, slashes, underscores, or 2-3 of
# [ -./_] ("4111.1111.1111.1111", "0803/123/4567", "0803  123  4567", "4111 - 1111 - ..."). Only stitched
# values with a strong check come out of these (cards, SSNs, labelled BVN/NIN, national phones), so
# dates, versions and references joined the same way stay untouched.
_SEP_RUN = re.compile(r"\d(?<![\w.+/,]\d)\d*(?:[ ./_-]{1,3}\d+)+")
_UNUSUAL_SEP = re.compile(r"[./_]|[ -]{2}")
_UNUSUAL_JOIN = re.compile(r"\d(?:[./_]|[ ./_-]{2,3})\d")


def find_separated_digits(text: str) -> Iterator[Candidate]:
    """Cards, SSNs, labelled BVN/NIN and national phones whose digit groups are joined unusually."""
    if _UNUSUAL_JOIN.search(text) is None:
        return
    for m in _SEP_RUN.finditer(text):
        s, e = m.span()
        if e - s < 10 or (e < len(text) and text[e].isalnum()) or _UNUSUAL_SEP.search(text, s, e) is None:
            continue
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, s, e)]
        found = list(_multi_group(text, groups, bare_groups=False))
        yield from found
        if not found:
            c = _grouped_local_phone(text, groups)
            if c is not None:
                yield c


def _grouped_local_phone(text: str, groups: list[tuple[int, int]]) -> Candidate | None:
    """0803/123/4567: a trunk-0 code of 3-5 digits first (so "01/02/2024 10" is not one), then groups
    making a valid NG/GH/KE/GB national number."""
    a, b = groups[0]
    if text[a] != "0" or not 3 <= b - a <= 5:
        return None
    digits = text[a:b]
    end = None
    for gs, ge in groups[1:]:
        digits += text[gs:ge]
        if len(digits) > 11:
            break
        if len(digits) >= 10 and local_phone_region(digits):
            end = ge
    if end is None:
        return None
    return Candidate("PHONE", a, end, 0.9 if has_context(text, a, end, "PHONE") else 0.7, "phone_national_grouped")


