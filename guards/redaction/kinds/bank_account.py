"""BANK_ACCOUNT: UK sort code + account pairs and labelled sort codes here; NUBAN and US account/routing
numbers are bare digit runs the digit classifier labels by these cues."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..context import has_context
from ..spec import Candidate, KindSpec


def aba_routing_ok(digits: str) -> bool:
    """ABA routing transit number checksum (weights 3,7,1)."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


_SORT_CODE_ACCOUNT = re.compile(
    r"\d(?<![\w-]\d)\d-\d{2}-\d{2}[,;/]?[ \t]+"
    r"(?:(?i:a/c|acc(?:ount)?|acct)(?:[ \t]*(?i:no\.?|number|#))?[ \t]*:?[ \t]*)?\d{8}(?!\w)"
)
_SORT_CODE = re.compile(r"\d(?<![\w-]\d)\d-\d{2}-\d{2}(?![\w-])")


def find_bank_accounts(text: str) -> Iterator[Candidate]:
    """UK sort code + account pairs, and sort codes labelled as such."""
    for m in _SORT_CODE_ACCOUNT.finditer(text):
        yield Candidate("BANK_ACCOUNT", m.start(), m.end(), 0.9, "uk_sort_code_account")
    for m in _SORT_CODE.finditer(text):
        if has_context(text, m.start(), m.end(), "BANK_ACCOUNT"):
            yield Candidate("BANK_ACCOUNT", m.start(), m.end(), 0.8, "uk_sort_code")


SPEC = KindSpec(
    "BANK_ACCOUNT",
    recognizers=(find_bank_accounts,),
    cues=r"account|acct|acc|a/c|nuban|routing|sort\s*code|aba|rtn|bank\s+details",
    field_hints=("account_number", "account_no", "acct_no", "nuban", "bank_account"),
    tail=True,
)
