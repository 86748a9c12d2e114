"""IBAN: ISO 13616 account numbers in any case, compact or grouped, cut to the country's registered length."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..spec import Candidate, KindSpec

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """ISO 13616: known country, exact per-country length, mod-97 == 1. `iban` has no spaces."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    # Fold the digit expansion incrementally so the integer never gets large.
    rem = 0
    for ch in rearranged:
        val = ord(ch) - 48 if ch.isdigit() else ord(ch) - 55
        rem = (rem * 100 + val) % 97 if val > 9 else (rem * 10 + val) % 97
    return rem == 1


# Any case ("gb82 west ..."), groups joined by spaces or dashes; mod-97 keeps look-alikes out.
_IBAN = re.compile(r"[A-Za-z](?<!\w[A-Za-z])[A-Za-z]\d{2}(?:[ -]{0,2}[A-Za-z0-9]){10,30}")


def find_ibans(text: str) -> Iterator[Candidate]:
    """IBANs in any case, compact or in groups, cut to the country's registered length."""
    for m in _IBAN.finditer(text):
        s = m.start()
        length = IBAN_LENGTHS.get(text[s : s + 2].upper())
        if length is None:
            continue
        count, i, e = 0, s, m.end()
        while i < e and count < length:
            if text[i].isalnum():
                count += 1
            i += 1
        if count != length or (i < len(text) and text[i].isalnum()):
            continue
        if iban_ok("".join(c for c in text[s:i] if c.isalnum())):
            yield Candidate("IBAN", s, i, 0.95, "iban_mod97")


SPEC = KindSpec("IBAN", recognizers=(find_ibans,), field_hints=("iban",), tail=True)
