"""CARD_NUMBER: payment card numbers (Luhn plus a known IIN prefix and length).

Cards are found by the digit classifier (`guards.redaction.digits`), which needs these validators; a Luhn-valid
number labelled as an order, invoice, tracking or loyalty number and not as a card is left alone.
"""

from __future__ import annotations

import re

from ..context import has_context
from ..spec import KindSpec

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


CUES = r"card|cards|pan|visa|mastercard|verve|amex|debit|credit"
# Labels of business numbers that pass Luhn by chance (1 in 10 do): with one of these right before the number
# and no card word, it is not a card.
_NOT_A_CARD = re.compile(
    r"(?<!\w)(?:order|orders|invoice|inv|tracking|track|parcel|shipment|loyalty|reference|ref|ticket|booking|"
    r"receipt|transaction|txn|confirmation|voucher|coupon|meter|policy|account|acct|a/c|imei|serial|"
    r"not\s+a\s+card)(?:\s+(?:no|number|num|id|code|#))?\.?\s*[:#]?\s*(?:\(\w+\)\s*)?$",
    re.IGNORECASE,
)


_NEGATED = re.compile(r"\s*[(,-]?\s*(?:not\s+a\s+card|not\s+card)\b", re.IGNORECASE)


# The narrower set that also overrides the bare 11-digit fallback (BVN/NIN/phone): labels of numbers that are
# never a person's ("ref 22987654321" stays masked: a reference is often the customer's own BVN or phone).
_GOODS_LABEL = re.compile(
    r"(?<!\w)(?:order|orders|invoice|inv|tracking|track|parcel|shipment|booking|voucher|coupon|meter|imei|serial)"
    r"(?:\s+(?:no|number|num|id|code|#))?\.?\s*[:#]?\s*$",
    re.IGNORECASE,
)


def business_label_before(text: str, start: int, *, goods_only: bool = False) -> bool:
    """An order, invoice, tracking, reference ... label right before `start` (`goods_only`: only labels of
    numbers that never identify a person: orders, parcels, invoices, meters)."""
    pattern = _GOODS_LABEL if goods_only else _NOT_A_CARD
    return pattern.search(text[max(0, start - 32):start]) is not None


def labelled_not_card(text: str, start: int, end: int) -> bool:
    """The number is labelled as something else ("Order number 4111...", "(not a card)") and not as a card."""
    if _NEGATED.match(text, end) is not None:
        return True
    if not business_label_before(text, start):
        return False
    return not has_context(text, start, end, "CARD_NUMBER", before=24, after=12)


SPEC = KindSpec("CARD_NUMBER", cues=CUES, field_hints=("card_number", "pan"), tail=True)
