"""EMAIL: addresses with a dotted domain and a TLD (Unicode and punycode allowed), and obfuscated ones
("ama [at] example [dot] com", "chidi(at)yahoo(dot)co(dot)uk", "kofi at gmail dot com")."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..spec import Candidate, KindSpec

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
    """Addresses with a dotted domain and a TLD; local part up to 64 characters."""
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
            yield Candidate("EMAIL", i, m.end(), 0.95, "email")


# "at"/"dot" spelled out, bracketed or not. A bare " at " / " dot " (no brackets) needs a known mail TLD at
# the end, so "meet at noon dot com" style prose is rare and "pay at the shop" never matches.
_AT = r"(?:[ \t]*[\[({<][ \t]*(?:at|@)[ \t]*[\])}>][ \t]*|[ \t]+(?:at|AT)[ \t]+|@)"
_DOT = r"(?:[ \t]*[\[({<][ \t]*(?:dot|\.)[ \t]*[\])}>][ \t]*|[ \t]+(?:dot|DOT)[ \t]+|\.)"
_OBFUSCATED = re.compile(
    rf"(?<![\w.+-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+-]{{0,63}}){_AT}"
    rf"(?P<domain>[A-Za-z0-9-]{{1,63}}(?:{_DOT}[A-Za-z0-9-]{{1,63}}){{0,4}}){_DOT}"
    r"(?P<tld>com|net|org|ng|gh|ke|uk|co|io|edu|gov|info|biz|me|us|africa)(?![\w-])",
    re.IGNORECASE,
)


def find_obfuscated_emails(text: str) -> Iterator[Candidate]:
    """Addresses with "at"/"dot" written out or bracketed; at least one part must be spelled out."""
    low = text.lower()
    if " at " not in low and "(at)" not in low and "[at]" not in low and "{at}" not in low and "<at>" not in low \
            and " dot " not in low and "[dot]" not in low and "(dot)" not in low:
        return
    for m in _OBFUSCATED.finditer(text):
        value = m.group()
        if "@" in value and "." in value.split("@", 1)[1] and "dot" not in value.lower():
            continue  # a plain address: find_emails owns it
        yield Candidate("EMAIL", m.start(), m.end(), 0.9, "email_obfuscated")


SPEC = KindSpec("EMAIL", digitless=(find_emails, find_obfuscated_emails), field_hints=("email", "email_address"))
