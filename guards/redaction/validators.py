"""Checksum and format validators. Pure functions over normalised strings (no regex scanning here)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import re

# --- payment cards ---------------------------------------------------------------------------

# (low, high, prefix length, allowed lengths, brand). Ranges are inclusive on the first `prefix length`
# digits. Luhn alone passes 1 in 10 random strings, so every card must ALSO match one of these.
_CARD_RULES: tuple[tuple[int, int, int, frozenset[int], str], ...] = (
    (4, 4, 1, frozenset({13, 16, 19}), "visa"),
    (51, 55, 2, frozenset({16}), "mastercard"),
    (2221, 2720, 4, frozenset({16}), "mastercard"),
    (34, 34, 2, frozenset({15}), "amex"),
    (37, 37, 2, frozenset({15}), "amex"),
    (6011, 6011, 4, frozenset(range(16, 20)), "discover"),
    (644, 649, 3, frozenset(range(16, 20)), "discover"),
    (65, 65, 2, frozenset(range(16, 20)), "discover"),
    (506099, 506198, 6, frozenset({16, 18, 19}), "verve"),
    (650002, 650027, 6, frozenset({16, 18, 19}), "verve"),
    (3528, 3589, 4, frozenset(range(16, 20)), "jcb"),
    (2131, 2131, 4, frozenset({15}), "jcb"),
    (1800, 1800, 4, frozenset({15}), "jcb"),
    (62, 62, 2, frozenset(range(16, 20)), "unionpay"),
    (300, 305, 3, frozenset(range(14, 20)), "diners"),
    (36, 36, 2, frozenset(range(14, 20)), "diners"),
    (38, 39, 2, frozenset(range(14, 20)), "diners"),
    (2200, 2204, 4, frozenset(range(16, 20)), "mir"),
    (5018, 5018, 4, frozenset(range(12, 20)), "maestro"),
    (5020, 5020, 4, frozenset(range(12, 20)), "maestro"),
    (5038, 5038, 4, frozenset(range(12, 20)), "maestro"),
    (5893, 5893, 4, frozenset(range(12, 20)), "maestro"),
    (6304, 6304, 4, frozenset(range(12, 20)), "maestro"),
    (6759, 6759, 4, frozenset(range(12, 20)), "maestro"),
    (6761, 6763, 4, frozenset(range(12, 20)), "maestro"),
)


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812 Luhn check over a digits-only string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """Brand whose IIN prefix and length rules `digits` satisfies, or None. Does not check Luhn."""
    n = len(digits)
    for low, high, plen, lengths, brand in _CARD_RULES:
        if n in lengths and low <= int(digits[:plen]) <= high:
            return brand
    return None


def is_card(digits: str) -> bool:
    """True for a digits-only string that passes Luhn and a known IIN prefix/length rule."""
    return 12 <= len(digits) <= 19 and card_brand(digits) is not None and luhn_ok(digits)


# --- IBAN --------------------------------------------------------------------------------------

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


# --- national identifiers -----------------------------------------------------------------------


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """US SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def aba_routing_ok(digits: str) -> bool:
    """ABA routing transit number checksum (weights 3,7,1)."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


# --- phones (digits-only national formats; separators already stripped) -------------------------

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


# --- network / crypto ---------------------------------------------------------------------------


def ipv4_ok(candidate: str) -> bool:
    parts = candidate.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def ipv6_ok(candidate: str) -> bool:
    if candidate.count(":") < 2 or not any(c not in ":" for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def base58check_decode(s: str) -> bytes | None:
    """Payload (version byte + data) of a Base58Check string, or None if the checksum is wrong."""
    num = 0
    for c in s:
        idx = _B58_INDEX.get(c)
        if idx is None:
            return None
        num = num * 58 + idx
    raw = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    pad = len(s) - len(s.lstrip("1"))
    raw = b"\x00" * pad + raw
    if len(raw) < 5:
        return None
    payload, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        return None
    return payload


def btc_base58_ok(s: str) -> bool:
    """Legacy P2PKH (1...) or P2SH (3...) Bitcoin address with a valid Base58Check checksum."""
    payload = base58check_decode(s)
    return payload is not None and len(payload) == 21 and payload[0] in (0x00, 0x05)


def tron_ok(s: str) -> bool:
    """Tron (TRC-20) address: Base58Check, version byte 0x41."""
    payload = base58check_decode(s)
    return payload is not None and len(payload) == 21 and payload[0] == 0x41


_BECH32_CHARS = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _BECH32_GEN[i]
    return chk


def bech32_ok(s: str) -> bool:
    """Segwit address (BIP-173 bech32 or BIP-350 bech32m) with a valid checksum."""
    if s.lower() != s and s.upper() != s:
        return False
    s = s.lower()
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s) or len(s) > 90:
        return False
    hrp, data = s[:pos], s[pos + 1 :]
    try:
        values = [_BECH32_CHARS.index(c) for c in data]
    except ValueError:
        return False
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    return _bech32_polymod(expanded + values) in (1, 0x2BC830A3)


# --- dates --------------------------------------------------------------------------------------


def plausible_birth_date(year: int, month: int, day: int) -> bool:
    """A real calendar date between 1900 and today."""
    if not 1900 <= year <= _dt.date.today().year:
        return False
    try:
        return _dt.date(year, month, day) <= _dt.date.today()
    except ValueError:
        return False
