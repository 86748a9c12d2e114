r"""Pattern recognisers for structured identifiers.

Each recogniser is ``(text) -> Iterator[Candidate]``. Regexes are compiled once at import and use bounded
quantifiers, so there is no catastrophic backtracking. They open with a plain character class followed by
a look-behind (``\d(?<![\w.]\d)`` rather than ``(?<![\w.])\d``): same meaning (token starts only), but the
regex engine can then skip straight to candidate first characters, which is 3-15x faster on long text.
Validation (checksums, prefix tables, context) happens in Python on the few spans that match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import phonenumbers

from . import validators as v
from .context import context_windows, has_context, ranked_context
from .models import Candidate, PiiKind

K = PiiKind


def _token_start(text: str, i: int) -> bool:
    return i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")


_NON_DIGIT = re.compile(r"\D+")


def _digits(s: str) -> str:
    return _NON_DIGIT.sub("", s)


def _group_ends(text: str, start: int, end: int) -> list[int]:
    """Absolute end offsets of each separator-delimited group in text[start:end]."""
    ends: list[int] = []
    i = start
    in_group = False
    while i < end:
        alnum = text[i].isalnum()
        if in_group and not alnum:
            ends.append(i)
        in_group = alnum
        i += 1
    if in_group:
        ends.append(end)
    return ends


def _longest_valid_prefix(
    text: str, start: int, end: int, ok: Callable[[str], bool], min_groups: int = 1
) -> int | None:
    """End offset of the longest group-aligned prefix of text[start:end] accepted by `ok`.

    Greedy patterns sometimes swallow a following number ("0803 123 4567 2024"); dropping whole trailing
    groups recovers the real value without a second regex pass.
    """
    ends = _group_ends(text, start, end)
    for e in reversed(ends[min_groups - 1 :]):
        if ok(text[start:e]):
            return e
    return None


# --- digit runs: cards, SSN, bare 8-19 digit identifiers (BVN / NIN / phone / account / passport) -------

# A run of digits optionally separated by single spaces or dashes. Not preceded by a word char, '.', '+'
# or another digit group, and not followed by a decimal part, so amounts like "150,000.00" never match.
_DIGIT_RUN = re.compile(r"\d(?<![\w.+/,]\d)(?<!\d[ -]\d)(?:[ -]?\d)*(?!\w|[.,]\d)")
_GROUP = re.compile(r"\d+")

# Classification order when several context words are equally close.
_BARE_CONTEXT_KINDS = (K.BVN, K.NIN, K.SSN, K.PASSPORT, K.BANK_ACCOUNT, K.PHONE, K.CARD_NUMBER)
_CURRENCY_NEAR = re.compile(r"(?:₦|\$|£|€|\b(?:NGN|USD|GBP|EUR|GHS|KES|naira|cedis?|shillings?)\b)\s*$", re.I)
_CURRENCY_AFTER = re.compile(r"\s*(?:₦|\$|£|€|(?:NGN|USD|GBP|EUR|GHS|KES|naira|cedis?|shillings?)\b)", re.I)


def _amount_like(text: str, s: int, e: int) -> bool:
    """A currency right before or after the span: "NGN 12 345 678 901" / "12 345 678 901 naira"."""
    return _CURRENCY_NEAR.search(text[max(0, s - 8) : s]) is not None or _CURRENCY_AFTER.match(text, e) is not None


def _intl_digits_phone(digits: str) -> bool:
    """Country-code-prefixed number written without '+', e.g. 2348031234567."""
    if not digits.startswith(("234", "233", "254", "44", "1")):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse("+" + digits, None))
    except phonenumbers.NumberParseException:
        return False


def _accepts(kind: PiiKind, digits: str) -> float | None:
    """Score for a bare digit string labelled as `kind` by nearby context, or None if the shape is wrong."""
    n = len(digits)
    if kind is K.BVN and n == 11:
        return 0.95 if digits.startswith("22") else 0.85
    if kind is K.NIN and n == 11:
        return 0.9
    if kind is K.SSN and n == 9 and v.ssn_ok(digits[:3], digits[3:5], digits[5:]):
        return 0.9
    if kind is K.PASSPORT and 8 <= n <= 9:
        return 0.85
    if kind is K.BANK_ACCOUNT and 8 <= n <= 18 and not v.NG_MOBILE_LOCAL.fullmatch(digits):
        # An 11-digit 0[789][01] number is never a NUBAN (10 digits); a nearby "account" is about something else.
        return 0.85
    if kind is K.PHONE and (
        (n in (10, 11) and (v.local_phone_region(digits) or (n == 10 and v.nanp_ok(digits))))
        or (11 <= n <= 13 and _intl_digits_phone(digits))
    ):
        return 0.9
    if kind is K.CARD_NUMBER and 12 <= n <= 19 and v.luhn_ok(digits):
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
        score = _accepts(kind, digits)
        if score is not None:
            return Candidate(kind, s, e, score, "digits_context")
    if n == 11:
        if v.NG_MOBILE_LOCAL.fullmatch(digits):
            return Candidate(K.PHONE, s, e, 0.6, "digits_bare")
        if digits.startswith("22"):
            return Candidate(K.BVN, s, e, 0.5, "digits_bare")
        return Candidate(K.NIN, s, e, 0.45, "digits_bare")
    if n == 10 and v.local_phone_region(digits):
        return Candidate(K.PHONE, s, e, 0.55, "digits_bare")
    if n in (12, 13) and _intl_digits_phone(digits):
        return Candidate(K.PHONE, s, e, 0.6, "digits_bare")
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
            if 12 <= len(digits) <= 19 and v.is_card(digits):
                yield Candidate(K.CARD_NUMBER, s, e, 0.95, "card_luhn_iin")
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
        if not v.ssn_ok(text[a:a2], text[b:b2], text[c:c2]):
            continue
        sep = text[a2:b]
        formatted = sep == text[b2:c] and sep in ("-", ".")
        if formatted or has_context(text, a, c2, K.SSN):
            yield Candidate(K.SSN, a, c2, 0.9 if formatted else 0.85, "ssn")
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
            if v.is_card(_digits(text[s:e])):
                yield Candidate(K.CARD_NUMBER, s, e, 0.95, "card_luhn_iin")
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
        if not _amount_like(text, s, e) and _intl_digits_phone(_digits(text[s:e])):
            ctx = has_context(text, s, e, K.PHONE)
            yield Candidate(K.PHONE, s, e, 0.9 if ctx else 0.6, "phone_intl_no_plus")
            return
    if not bare_groups:
        return
    # Whatever is left: long single groups are bare identifiers on their own.
    for idx, (s, e) in enumerate(groups):
        if used[idx] or e - s < 8:
            continue
        digits = text[s:e]
        if 12 <= len(digits) <= 19 and v.is_card(digits):
            yield Candidate(K.CARD_NUMBER, s, e, 0.95, "card_luhn_iin")
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
        score = _accepts(kind, digits)
        if score is not None:
            return Candidate(kind, s, e, score, "digits_grouped_context") if kind in (K.BVN, K.NIN) else None
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
        if len(digits) >= 10 and v.local_phone_region(digits):
            end = ge
    if end is None:
        return None
    return Candidate(K.PHONE, a, end, 0.9 if has_context(text, a, end, K.PHONE) else 0.7, "phone_national_grouped")


# --- phones ----------------------------------------------------------------------------------------

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
    return v.local_phone_region(_digits(s)) is not None


def _us_ok(s: str) -> bool:
    d = _digits(s)
    if len(d) == 11 and d[0] == "1":
        d = d[1:]
    return v.nanp_ok(d)


def find_phones(text: str) -> Iterator[Candidate]:
    """E.164 numbers for any country (validated with phonenumbers; '+' or 00) plus NG/GH/KE/GB/US national
    formats."""
    for m in _INTL_PHONE.finditer(text):
        s, e = m.span()
        end = _longest_valid_prefix(text, s, e, _intl_ok, min_groups=1)
        if end is not None:
            ctx = has_context(text, s, end, K.PHONE)
            yield Candidate(K.PHONE, s, end, 0.9 if ctx else 0.85, "phone_e164")
        elif has_context(text, s, e, K.PHONE) and _intl_possible(text[s:e]):
            yield Candidate(K.PHONE, s, e, 0.6, "phone_e164_possible")
    for m in _IDD_PHONE.finditer(text):
        s, e = m.span()
        end = _longest_valid_prefix(text, s, e, _idd_ok)
        if end is not None:
            ctx = has_context(text, s, end, K.PHONE)
            yield Candidate(K.PHONE, s, end, 0.9 if ctx else 0.85, "phone_idd")
    for m in _LOCAL_PHONE.finditer(text):
        s, e = m.span()
        if _DATE_LIKE_START.match(text, s):
            continue
        end = _longest_valid_prefix(text, s, e, _local_ok)
        if end is not None:
            ctx = has_context(text, s, end, K.PHONE)
            yield Candidate(K.PHONE, s, end, 0.9 if ctx else 0.7, "phone_national")
    for m in _US_PHONE.finditer(text):
        s, e = m.span()
        if _us_ok(m.group()):
            ctx = has_context(text, s, e, K.PHONE)
            yield Candidate(K.PHONE, s, e, 0.9 if ctx else 0.75, "phone_nanp")


# --- IBAN / bank accounts ---------------------------------------------------------------------------

# Any case ("gb82 west ..."), groups joined by spaces or dashes; mod-97 keeps look-alikes out.
_IBAN = re.compile(r"[A-Za-z](?<!\w[A-Za-z])[A-Za-z]\d{2}(?:[ -]{0,2}[A-Za-z0-9]){10,30}")


def find_ibans(text: str) -> Iterator[Candidate]:
    """ISO 13616 IBANs in any case, compact or in groups, cut to the country's registered length."""
    for m in _IBAN.finditer(text):
        s = m.start()
        length = v.IBAN_LENGTHS.get(text[s : s + 2].upper())
        if length is None:
            continue
        count, i, e = 0, s, m.end()
        while i < e and count < length:
            if text[i].isalnum():
                count += 1
            i += 1
        if count != length or (i < len(text) and text[i].isalnum()):
            continue
        if v.iban_ok("".join(c for c in text[s:i] if c.isalnum())):
            yield Candidate(K.IBAN, s, i, 0.95, "iban_mod97")


_SORT_CODE_ACCOUNT = re.compile(
    r"\d(?<![\w-]\d)\d-\d{2}-\d{2}[,;/]?[ \t]+"
    r"(?:(?i:a/c|acc(?:ount)?|acct)(?:[ \t]*(?i:no\.?|number|#))?[ \t]*:?[ \t]*)?\d{8}(?!\w)"
)
_SORT_CODE = re.compile(r"\d(?<![\w-]\d)\d-\d{2}-\d{2}(?![\w-])")


def find_bank_accounts(text: str) -> Iterator[Candidate]:
    """UK sort code + account pairs, and sort codes labelled as such.

    NUBAN / US account and routing numbers are bare digit runs and are classified in find_digit_runs.
    """
    for m in _SORT_CODE_ACCOUNT.finditer(text):
        yield Candidate(K.BANK_ACCOUNT, m.start(), m.end(), 0.9, "uk_sort_code_account")
    for m in _SORT_CODE.finditer(text):
        if has_context(text, m.start(), m.end(), K.BANK_ACCOUNT):
            yield Candidate(K.BANK_ACCOUNT, m.start(), m.end(), 0.8, "uk_sort_code")


# --- email / IP / crypto ----------------------------------------------------------------------------

# Anchored on '@' (a literal the regex engine can skip to quickly); the local part is walked back in Python.
# Internationalised (RFC 6531): Unicode letters in labels and local part, Unicode or punycode TLDs.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_LABEL = rf"(?:[^\W_]|[{_MARKS}-])"
_EMAIL_DOMAIN = re.compile(
    rf"@{_LABEL}{{1,63}}(?:\.{_LABEL}{{1,63}}){{0,8}}\.(?:[^\W\d_]{{2,24}}|xn--[A-Za-z0-9-]{{1,59}})(?![\w-])"
)
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_MARK = re.compile(rf"[{_MARKS}]")


def _local_char(c: str) -> bool:
    return c in _LOCAL_CHARS or c.isalnum() or _MARK.match(c) is not None


def find_emails(text: str) -> Iterator[Candidate]:
    """Addresses with a dotted domain and a TLD (letters or punycode); local part up to 64 characters."""
    for m in _EMAIL_DOMAIN.finditer(text):
        at = m.start()
        i = at
        while i > 0 and _local_char(text[i - 1]) and at - i < 64:
            i -= 1
        if i > 0 and _local_char(text[i - 1]):
            continue  # local part longer than RFC 5321 allows, or glued to other text
        while i < at and not text[i].isalnum():
            i += 1
        if i < at:
            yield Candidate(K.EMAIL, i, m.end(), 0.95, "email")


_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?::(?<![\w:.]:)|[0-9A-Fa-f](?<![\w:.][0-9A-Fa-f])[0-9A-Fa-f]{0,3}:)(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?!\w|:|\.\d)"
)


# "version 4.1.1.1" is a four-part version number, not an address.
_VERSION_BEFORE = re.compile(r"(?<!\w)(?i:version|ver|release|build|firmware|app|sdk)\.?[ \t:]*$")


def find_ips(text: str) -> Iterator[Candidate]:
    """IPv4 with every octet <= 255 (not right after a version label); IPv6 (incl. :: compression and
    embedded IPv4) checked by ipaddress."""
    for m in _IPV4.finditer(text):
        if v.ipv4_ok(m.group()) and not _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            yield Candidate(K.IP_ADDRESS, m.start(), m.end(), 0.85, "ipv4")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            if v.ipv6_ok(m.group()):
                yield Candidate(K.IP_ADDRESS, m.start(), m.end(), 0.85, "ipv6")


_ETH = re.compile(r"0(?<!\w0)x[0-9a-fA-F]{40}(?!\w)")
_BTC_B58 = re.compile(r"[13](?<!\w[13])[1-9A-HJ-NP-Za-km-z]{25,34}(?!\w)")
_BECH32 = re.compile(r"(?:[bB](?<!\w[bB])[cC]|[tT](?<!\w[tT])[bB])1[02-9ac-hj-np-zAC-HJ-NP-Z]{6,87}(?!\w)")
_TRON = re.compile(r"T(?<!\wT)[1-9A-HJ-NP-Za-km-z]{33}(?!\w)")


def find_crypto(text: str) -> Iterator[Candidate]:
    """ETH/ERC-20 (0x + 40 hex), BTC Base58Check and bech32/bech32m, Tron (TRC-20) Base58Check."""
    for m in _ETH.finditer(text):
        yield Candidate(K.CRYPTO_ADDRESS, m.start(), m.end(), 0.9, "eth_address")
    for m in _BTC_B58.finditer(text):
        if v.btc_base58_ok(m.group()):
            yield Candidate(K.CRYPTO_ADDRESS, m.start(), m.end(), 0.95, "btc_base58check")
    for m in _BECH32.finditer(text):
        if v.bech32_ok(m.group()):
            yield Candidate(K.CRYPTO_ADDRESS, m.start(), m.end(), 0.95, "btc_bech32")
    for m in _TRON.finditer(text):
        if v.tron_ok(m.group()):
            yield Candidate(K.CRYPTO_ADDRESS, m.start(), m.end(), 0.95, "tron_base58check")


# --- context-gated: passport, date of birth ---------------------------------------------------------

_PASSPORT = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]?\d{6,8}(?!\w)")


def find_passports(text: str) -> Iterator[Candidate]:
    """Letter-prefixed passport numbers (NG A12345678, US/GH/KE styles) near the word "passport".

    All-digit GB/US passport numbers are bare digit runs and are classified in find_digit_runs.
    """
    for lo, hi in context_windows(text, K.PASSPORT):
        for m in _PASSPORT.finditer(text, lo, hi):
            if has_context(text, m.start(), m.end(), K.PASSPORT):
                yield Candidate(K.PASSPORT, m.start(), m.end(), 0.85, "passport_context")


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


def _date_ok(m: re.Match[str]) -> bool:
    g = m.groupdict()
    if g["iy"]:
        return v.plausible_birth_date(int(g["iy"]), int(g["im"]), int(g["id"]))
    if g["ny"]:
        y, a, b = int(g["ny"]), int(g["na"]), int(g["nb"])
        return v.plausible_birth_date(y, b, a) or v.plausible_birth_date(y, a, b)
    if g["dy"]:
        return v.plausible_birth_date(int(g["dy"]), _MONTH_NUM[g["dm"][:3].lower()], int(g["dd"]))
    return v.plausible_birth_date(int(g["my"]), _MONTH_NUM[g["mm"][:3].lower()], int(g["md"]))


def find_dates_of_birth(text: str) -> Iterator[Candidate]:
    """Dates (ISO, d/m/y or m/d/y, '12 Apr 1990', 'April 12, 1990') within reach of a birth-date label."""
    for lo, hi in context_windows(text, K.DATE_OF_BIRTH):
        for m in _DATE.finditer(text, lo, hi):
            if (m.group("mm") and not _token_start(text, m.start())) or not _date_ok(m):
                continue
            if has_context(text, m.start(), m.end(), K.DATE_OF_BIRTH):
                yield Candidate(K.DATE_OF_BIRTH, m.start(), m.end(), 0.9, "date_of_birth")


# --- other national identity numbers (classified as NIN: a national identification number) -------------

# Ghana Card PIN: GHA-#########-# (the format alone identifies it).
_GHANA_CARD = re.compile(r"(?<![\w-])GHA-\d{9}-\d(?!\w)")
# UK National Insurance number: two prefix letters (not D F I Q U V; second not O; not BG GB NK KN NT TN ZZ),
# six digits, suffix A-D; spaced or not.
_UK_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"[ \t]?\d{2}[ \t]?\d{2}[ \t]?\d{2}[ \t]?[A-D](?![A-Za-z0-9])"
)
# Kenyan national ID: 7-8 digits, only with an ID label just before it.
_KE_ID = re.compile(
    r"(?i:national[ \t]+id(?:entity)?(?:[ \t]+(?:card|number|no\.?))?|id[ \t]*(?:no\.?|number|#)|huduma(?:[ \t]+namba)?"
    r"|kitambulisho)[ \t]*[:#]?[ \t]*(?P<id>\d(?<!\d\d)\d{6,7})(?!\d)"
)


def find_national_ids(text: str) -> Iterator[Candidate]:
    """Ghana Card PINs, UK National Insurance numbers and (labelled) Kenyan national IDs."""
    for m in _GHANA_CARD.finditer(text):
        yield Candidate(K.NIN, m.start(), m.end(), 0.95, "ghana_card")
    for m in _UK_NINO.finditer(text):
        yield Candidate(K.NIN, m.start(), m.end(), 0.85, "uk_nino")
    for m in _KE_ID.finditer(text):
        yield Candidate(K.NIN, m.start("id"), m.end("id"), 0.85, "kenya_national_id")


Recognizer = Callable[[str], Iterator[Candidate]]

STRUCTURED_RECOGNIZERS: tuple[Recognizer, ...] = (
    find_digit_runs,
    find_separated_digits,
    find_phones,
    find_ibans,
    find_bank_accounts,
    find_emails,
    find_ips,
    find_crypto,
    find_passports,
    find_dates_of_birth,
    find_national_ids,
)
