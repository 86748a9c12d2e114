"""DATE_OF_BIRTH: a real past date (ISO, d/m/y or m/d/y, '12 Apr 1990', 'April 12, 1990') within reach of a
birth-date label; other dates are business data and stay."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator

from ..context import context_windows, has_context
from ..spec import Candidate, KindSpec


def plausible_birth_date(year: int, month: int, day: int) -> bool:
    """A real calendar date between 1900 and today."""
    if not 1900 <= year <= _dt.date.today().year:
        return False
    try:
        return _dt.date(year, month, day) <= _dt.date.today()
    except ValueError:
        return False


_MONTHS = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_MONTH_NUM = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_DATE = re.compile(
    r"(?:"
    r"(?P<iy>\d(?<![\w.]\d)\d{3})[-/.](?P<im>\d{1,2})[-/.](?P<id>\d{1,2})"
    r"|(?P<na>\d(?<![\w.]\d)\d?)[-/.](?P<nb>\d{1,2})[-/.](?P<ny>\d{4})"
    rf"|(?P<dd>\d(?<![\w.]\d)\d?)(?i:st|nd|rd|th)?(?:[ \t]+of)?[ \t]+(?P<dm>{_MONTHS})\.?,?[ \t]+(?P<dy>\d{{4}})"
    rf"|(?P<mm>{_MONTHS})\.?[ \t]+(?P<md>\d{{1,2}})(?i:st|nd|rd|th)?,?[ \t]+(?P<my>\d{{4}})"
    r")(?!\w)"
)


def _token_start(text: str, i: int) -> bool:
    return i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")


def _date_ok(m: re.Match[str]) -> bool:
    g = m.groupdict()
    if g["iy"]:
        return plausible_birth_date(int(g["iy"]), int(g["im"]), int(g["id"]))
    if g["ny"]:
        y, a, b = int(g["ny"]), int(g["na"]), int(g["nb"])
        return plausible_birth_date(y, b, a) or plausible_birth_date(y, a, b)
    if g["dy"]:
        return plausible_birth_date(int(g["dy"]), _MONTH_NUM[g["dm"][:3].lower()], int(g["dd"]))
    return plausible_birth_date(int(g["my"]), _MONTH_NUM[g["mm"][:3].lower()], int(g["md"]))


def find_dates_of_birth(text: str) -> Iterator[Candidate]:
    for lo, hi in context_windows(text, "DATE_OF_BIRTH"):
        for m in _DATE.finditer(text, lo, hi):
            if (m.group("mm") and not _token_start(text, m.start())) or not _date_ok(m):
                continue
            if has_context(text, m.start(), m.end(), "DATE_OF_BIRTH"):
                yield Candidate("DATE_OF_BIRTH", m.start(), m.end(), 0.9, "date_of_birth")


SPEC = KindSpec(
    "DATE_OF_BIRTH",
    recognizers=(find_dates_of_birth,),
    cues=r"born|dob|d\.o\.b|date\s+of\s+birth|birth\s*date|birthday",
    field_hints=("dob", "date_of_birth", "birth_date", "birthdate"),
)
