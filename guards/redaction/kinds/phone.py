"""PHONE: E.164 numbers for any country (checked with phonenumbers; '+' or 00), NG/GH/KE/GB/US national
formats, and numbers spelled out in words ("zero eight zero three ..."). Bare 10-13 digit runs come from the
digit classifier, which uses the national-format checks below."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import phonenumbers

from ..context import has_context
from ..spec import Candidate, KindSpec

NG_MOBILE_LOCAL = re.compile(r"0[789][01]\d{8}")
_GH_LOCAL = re.compile(r"0(?:20|23|24|25|26|27|28|50|53|54|55|56|57|59)\d{7}")
_KE_LOCAL = re.compile(r"0[17]\d{8}")
_GB_LOCAL = re.compile(r"07\d{9}|0[12]\d{8,9}")


def local_phone_region(digits: str) -> str | None:
    """Region whose national (0-prefixed) format `digits` matches: NG, GH, KE, GB, or None."""
    if NG_MOBILE_LOCAL.fullmatch(digits):
        return "NG"
    if _GH_LOCAL.fullmatch(digits):
        return "GH"
    if _KE_LOCAL.fullmatch(digits):
        return "KE"
    if _GB_LOCAL.fullmatch(digits):
        return "GB"
    return None


def nanp_ok(digits: str) -> bool:
    """10-digit NANP number: area and exchange start with 2-9, area code is not N11."""
    return len(digits) == 10 and digits[0] >= "2" and digits[3] >= "2" and digits[1:3] != "11"


def intl_digits_phone(digits: str) -> bool:
    """Country-code-prefixed number written without '+', e.g. 2348031234567."""
    if not digits.startswith(("234", "233", "254", "44", "1")):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse("+" + digits, None))
    except phonenumbers.NumberParseException:
        return False


_NON_DIGIT = re.compile(r"\D+")


def _digits(s: str) -> str:
    return _NON_DIGIT.sub("", s)


def _group_ends(text: str, start: int, end: int) -> list[int]:
    ends: list[int] = []
    in_group = False
    for i in range(start, end):
        alnum = text[i].isalnum()
        if in_group and not alnum:
            ends.append(i)
        in_group = alnum
    if in_group:
        ends.append(end)
    return ends


def _longest_valid_prefix(text: str, start: int, end: int, ok: Callable[[str], bool]) -> int | None:
    """End of the longest group-aligned prefix of text[start:end] accepted by `ok` (a greedy match may
    swallow a following number: "0803 123 4567 2024")."""
    for e in reversed(_group_ends(text, start, end)):
        if ok(text[start:e]):
            return e
    return None


_INTL_PHONE = re.compile(r"\+(?<![\w+]\+)(?:[ ./()_-]{0,3}\d){7,15}(?!\d)")
# "00234 803 123 4567": the international call prefix 00 written instead of '+'.
_IDD_PHONE = re.compile(r"0(?<![\w+.,/]0)0[ ./()_-]{0,3}[1-9](?:[ ./()_-]{0,3}\d){6,14}(?!\d)")
# A national number never starts with a 2-digit group: "02.03.2025 11:45" is a date and a time.
_DATE_LIKE_START = re.compile(r"0\d[ ./_-]")
_LOCAL_PHONE = re.compile(
    r"(?:\((?<![\w+.,/]\()0|0(?<![\w+.,/]0)(?<!\d[ -]0))\d{1,4}\)?(?:[ .-]?\d){5,10}(?!\w|[.,]\d)"
)
_US_PHONE = re.compile(
    r"(?:\((?<![\w+.]\()\d{3}\)[ .-]?"
    r"|1(?<![\w+.]1)[ .-]?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])"
    r"|[2-9](?<![\w+.][2-9])\d{2}[ .-])"
    r"\d{3}[ .-]\d{4}(?!\w|[.,-]?\d)"
)


def _intl_ok(s: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(s, None))
    except phonenumbers.NumberParseException:
        return False


def _intl_possible(s: str) -> bool:
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(s, None))
    except phonenumbers.NumberParseException:
        return False


def _idd_ok(s: str) -> bool:
    return _intl_ok("+" + _digits(s)[2:])


def _local_ok(s: str) -> bool:
    return local_phone_region(_digits(s)) is not None


def _us_ok(s: str) -> bool:
    d = _digits(s)
    if len(d) == 11 and d[0] == "1":
        d = d[1:]
    return nanp_ok(d)


def find_phones(text: str) -> Iterator[Candidate]:
    """E.164 numbers ('+' or 00) plus NG/GH/KE/GB/US national formats."""
    for m in _INTL_PHONE.finditer(text):
        s, e = m.span()
        end = _longest_valid_prefix(text, s, e, _intl_ok)
        if end is not None:
            yield Candidate("PHONE", s, end, 0.9 if has_context(text, s, end, "PHONE") else 0.85, "phone_e164")
        elif has_context(text, s, e, "PHONE") and _intl_possible(text[s:e]):
            yield Candidate("PHONE", s, e, 0.6, "phone_e164_possible")
    for m in _IDD_PHONE.finditer(text):
        s, e = m.span()
        end = _longest_valid_prefix(text, s, e, _idd_ok)
        if end is not None:
            yield Candidate("PHONE", s, end, 0.9 if has_context(text, s, end, "PHONE") else 0.85, "phone_idd")
    for m in _LOCAL_PHONE.finditer(text):
        s, e = m.span()
        if _DATE_LIKE_START.match(text, s):
            continue
        end = _longest_valid_prefix(text, s, e, _local_ok)
        if end is not None:
            yield Candidate("PHONE", s, end, 0.9 if has_context(text, s, end, "PHONE") else 0.7, "phone_national")
    for m in _US_PHONE.finditer(text):
        s, e = m.span()
        if _us_ok(m.group()):
            yield Candidate("PHONE", s, e, 0.9 if has_context(text, s, e, "PHONE") else 0.75, "phone_nanp")


# Digits spelled out, alone or mixed with figures: "zero eight zero three one two three ...", "oh seven 12 ...".
_WORD_DIGITS = {"zero": "0", "oh": "0", "o": "0", "nil": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_SPELLED = re.compile(
    r"(?i:\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple|\d{1,4})"
    r"(?:[ \t,-]+(?:zero|oh|o|nil|one|two|three|four|five|six|seven|eight|nine|double|triple|\d{1,4})\b){6,20})"
)


def _spelled_digits(s: str) -> str | None:
    out: list[str] = []
    repeat = 1
    words = re.split(r"[ \t,-]+", s.lower())
    if sum(w in _WORD_DIGITS for w in words) < 3:
        return None  # mostly figures: the figure recognisers own it
    for w in words:
        if w in ("double", "triple"):
            repeat = 2 if w == "double" else 3
            continue
        d = _WORD_DIGITS.get(w, w if w.isdigit() else None)
        if d is None:
            return None
        out.append(d * repeat if len(d) == 1 else d)
        repeat = 1
    return "".join(out)


def find_spelled_phones(text: str) -> Iterator[Candidate]:
    """Phone numbers written as words, valid as a national NG/GH/KE/GB/US or country-code number."""
    if not re.search(r"(?i)\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\b", text):
        return
    for m in _SPELLED.finditer(text):
        digits = _spelled_digits(m.group())
        if digits is None:
            continue
        if local_phone_region(digits) or (len(digits) == 10 and nanp_ok(digits)) or intl_digits_phone(digits):
            yield Candidate("PHONE", m.start(), m.end(), 0.8, "phone_spelled")


SPEC = KindSpec(
    "PHONE",
    recognizers=(find_phones,),
    digitless=(find_spelled_phones,),
    cues=r"phone|tel|telephone|mobile|cell|call|calls|whatsapp|sms|msisdn|contact|mob|reach",
    field_hints=("phone", "phone_number", "mobile", "mobile_number", "msisdn", "telephone", "tel"),
    tail=True,
)
