"""Red-team evasions: PII written with Unicode look-alikes or unusual separators, and names repeated from
another field of the same row. Offsets must keep indexing the original text."""

from __future__ import annotations

import pytest

from guards.redaction import PiiKind, RedactionPolicy, redact, redact_value
from guards.redaction.models import Action

K = PiiKind
CARD = "4111111111111111"
MC = "5555555555554444"
IBAN = "GB82WEST12345698765432"


def found(text: str) -> list[tuple[PiiKind, str]]:
    return [(f.kind, text[f.start : f.end]) for f in redact(text).findings]


def assert_masked(text: str, value: str, kind: PiiKind) -> None:
    """`value` is one finding of `kind` with exact original offsets, and no piece of it is left."""
    r = redact(text)
    start = text.index(value)
    spans = [(f.kind, f.start, f.end) for f in r.findings]
    assert (kind, start, start + len(value)) in spans, (text, found(text))
    assert r.text == text[:start] + f"[{kind.value}]" + text[start + len(value) :]


def groups(value: str, sep: str, sizes: tuple[int, ...] = (4, 4, 4, 4)) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(value[i : i + n])
        i += n
    return sep.join(out)


# --- cards -------------------------------------------------------------------------------------------

CARD_SEPARATORS = [".", "\u00a0", "\u2009", "\u202f", "\u2013", "\u2014", "\u2212", "/", "_", "\u200b",
                   "  ", " - ", ". ", "\u00a0\u00a0", "\u3000"]


@pytest.mark.parametrize("sep", CARD_SEPARATORS, ids=[repr(s) for s in CARD_SEPARATORS])
@pytest.mark.parametrize("card", [CARD, MC])
def test_card_with_any_separator(card: str, sep: str) -> None:
    value = groups(card, sep)
    assert_masked(f"Card {value} was declined.", value, K.CARD_NUMBER)


def test_amex_with_dots_and_fullwidth_and_other_script_digits() -> None:
    assert_masked("Amex 3782.822463.10005 please", "3782.822463.10005", K.CARD_NUMBER)
    fullwidth = "".join(chr(0xFF10 + int(c)) for c in CARD)
    assert_masked(f"card {fullwidth} ok", fullwidth, K.CARD_NUMBER)
    arabic = " ".join("".join(chr(0x0660 + int(c)) for c in CARD[i : i + 4]) for i in range(0, 16, 4))
    assert_masked(f"card {arabic} ok", arabic, K.CARD_NUMBER)


def test_combining_marks_on_digits_do_not_split_a_card() -> None:
    value = "4\u0301111 1111\u0336 1111 1111"
    assert_masked(f"card {value} ok", value, K.CARD_NUMBER)


def test_invalid_card_with_dots_is_left_alone() -> None:
    # Luhn fails: separators widen what is tried, not what is accepted.
    text = "ref 4111.1111.1111.1112 and 1234.5678.9012.3456"
    assert found(text) == []


def test_partial_and_hash_see_the_normalised_value() -> None:
    partial = RedactionPolicy(default=Action.PARTIAL)
    assert redact(f"card {groups(CARD, chr(0xA0))}", partial).text == "card ****1111"
    hashed = RedactionPolicy(default=Action.HASH, hash_key="k")
    assert redact(f"card {groups(CARD, '.')}", hashed).text == redact(f"card {CARD}", hashed).text


def test_keep_returns_the_original_characters() -> None:
    text = f"card {groups(CARD, chr(0x2009))} ok"
    r = redact(text, RedactionPolicy(default=Action.KEEP))
    assert r.text == text and [f.kind for f in r.findings] == [K.CARD_NUMBER]


def test_text_outside_findings_is_untouched() -> None:
    text = "Caf\u00e9\u00a0\u2014 l\u2019\uff21\u200bB 4111\u00a01111\u00a01111\u00a01111 \ufb01n"
    r = redact(text)
    assert r.text == "Caf\u00e9\u00a0\u2014 l\u2019\uff21\u200bB [CARD_NUMBER] \ufb01n"


# --- phones ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["0803/123/4567", "0803  123  4567", "00234 803 123 4567", "00234-803-123-4567", "0803\u00a0123\u00a04567",
     "0803\u2013123\u20134567", "+234\u2009803\u2009123\u20094567", "0803.123.4567", "0803_123_4567",
     "+234/803/123/4567", "0803 - 123 - 4567", "0712\u00a0345\u00a0678", "00 44 7911 123456"],
)
def test_phone_with_unusual_separators(value: str) -> None:
    assert_masked(f"Call me on {value} after six", value, K.PHONE)


# --- national identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("BVN 221 2345 6789 on file", "221 2345 6789", K.BVN),
        ("BVN: 221-2345-6789", "221-2345-6789", K.BVN),
        ("my bvn is 221.2345.6789.", "221.2345.6789", K.BVN),
        ("BVN 221\u00a02345\u00a06789", "221\u00a02345\u00a06789", K.BVN),
        ("NIN 123 4567 8901 rejected", "123 4567 8901", K.NIN),
        ("NIN: 1234 567 8901", "1234 567 8901", K.NIN),
        ("SSN 123.45.6789 is not mine", "123.45.6789", K.SSN),
        ("ssn 123/45/6789", "123/45/6789", K.SSN),
        ("record 123.45.6789 updated", "123.45.6789", K.SSN),
        ("SSN 123\u201345\u20136789", "123\u201345\u20136789", K.SSN),
    ],
)
def test_spaced_and_dotted_national_identifiers(text: str, value: str, kind: PiiKind) -> None:
    assert_masked(text, value, kind)


def test_grouped_eleven_digits_without_a_label_are_not_guessed() -> None:
    assert found("Batch 221 2345 6789 settled") == []


# --- IBAN ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["gb82 west 1234 5698 7654 32", "gb82west12345698765432", "GB82-WEST-1234-5698-7654-32",
     "Gb82 West 1234 5698 7654 32", "GB82\u00a0WEST\u00a01234\u00a05698\u00a07654\u00a032",
     "de89-3704-0044-0532-0130-00"],
)
def test_iban_any_case_and_dashed(value: str) -> None:
    assert_masked(f"Wire it to {value} today", value, K.IBAN)


def test_lowercase_iban_lookalike_with_bad_checksum_is_left_alone() -> None:
    assert found("code gb83 west 1234 5698 7654 32 here") == []


# --- emails --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["j\u00f6hn@example.com", "user@b\u00fccher.de", "jo\u0308hn.okafor@example.com", "ada\uff20kredete.ng",
     "ada@kredete\uff0eng", "ad\u200ba@kredete.ng", "ad\u00e9b\u00e1y\u1ecd\u0300@mail.ng",
     "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a", "user@xn--bcher-kva.de", "ama@ex\u00e4mple.xn--p1ai"],
)
def test_unicode_emails(value: str) -> None:
    assert_masked(f"Write to {value} please", value, K.EMAIL)


# --- look-alikes that must stay untouched ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Released version 4.1.1.1 and 10.2.0.1234 tonight.",
        "Statement dated 2026/01/15 and 15.01.2026 at 10:30.",
        "Expires 01/02/2024 10:30 UTC; next 02.03.2025 11:45.",
        "Ticket KRD/2026/01/004512 and batch INV_2026_000451 closed.",
        "Export settlements_2026_01_15_4512.csv uploaded.",
        "Account balance NGN 12345678.50 and \u20ac 1.234.567,89 posted.",
        "Account balance NGN\u00a012,345,678.50 after fees.",
        "Build 2026.01.15.1234 for corridor US-NG, 3\u00a0000 transfers.",
        "Pages 0803 - 0812 of the manual.",
        "Ranges 221 2345 6789 in the export are row counts.",
        "Paid 12\u00a0345\u00a0678\u00a0901 naira, or NGN 12 345 678 901 in total.",
        "Lot 123/45/6789 and ISBN 978\u20133\u201316\u2013148410\u20130 restocked.",
    ],
)
def test_lookalikes_untouched(text: str) -> None:
    r = redact(text)
    assert r.findings == [], found(text)
    assert r.text == text


# --- names repeated from another field of the same row ----------------------------------------------------


def test_counterparty_name_masked_in_the_rows_free_text() -> None:
    row = {"counterparty_name": "Peter Onyancha", "description": "Send to Peter at 12 Moi Avenue",
           "memo": "Rent to Peter Onyancha", "kind": "remittance"}
    out, counts = redact_value(row)
    assert out["counterparty_name"] == "[PERSON]"
    assert "Peter" not in out["description"] and "Moi Avenue" not in out["description"]
    assert out["memo"] == "Rent to [PERSON]"
    assert counts["PERSON"] >= 3


def test_row_names_apply_to_the_whole_payload() -> None:
    payload = {"items": [{"beneficiary_name": "Wanjiru Kamau", "memo": "school fees"},
                         {"counterparty_name": "Shoprite", "counterparty_type": "merchant",
                          "description": "groceries for wanjiru"}]}
    out, _ = redact_value(payload)
    assert out["items"][1]["description"] == "groceries for [PERSON]"
    assert out["items"][1]["counterparty_name"] == "Shoprite"


def test_row_names_the_principal_may_see_stay_visible() -> None:
    row = {"counterparty_name": "Peter Onyancha", "description": "Payout to Peter Onyancha, own account"}
    out, counts = redact_value(row, allow_names=["Peter Onyancha"])
    assert out == row and counts == {}


def test_row_name_with_zero_width_in_the_text() -> None:
    row = {"payee_name": "Peter Onyancha", "note": "for Pe\u200bter\u00a0Onyancha"}
    out, _ = redact_value(row)
    assert out["note"] == "for [PERSON]"


def test_lowercase_words_of_a_label_are_not_masked_everywhere() -> None:
    # Without counterparty_type the label is still treated as a person (safe default), but only its
    # capitalised words are taken as name parts, so "transfer" elsewhere stays readable.
    payload = [{"counterparty_name": "Bank transfer in"}, {"description": "transfer to savings"}]
    out, _ = redact_value(payload)
    assert out == [{"counterparty_name": "[PERSON]"}, {"description": "transfer to savings"}]


# --- counterparty_type -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "expected"),
    [("merchant", "Shoprite Lekki"), ("system", "Shoprite Lekki"), ("Merchant ", "Shoprite Lekki"),
     ("person", "[PERSON]"), (None, "[PERSON]"), ("", "[PERSON]"), ("company", "[PERSON]")],
)
def test_counterparty_type_decides_the_person_hint(ctype: str | None, expected: str) -> None:
    row: dict[str, object] = {"counterparty_name": "Shoprite Lekki", "description": "Card payment"}
    if ctype is not None:
        row["counterparty_type"] = ctype
    out, _ = redact_value(row)
    assert out["counterparty_name"] == expected


def test_merchant_and_system_labels_stay_readable() -> None:
    rows = [
        {"kind": "card_payment", "counterparty_name": "Shoprite Lekki", "counterparty_type": "merchant",
         "description": "Card payment at Shoprite Lekki"},
        {"kind": "deposit", "counterparty_name": "Bank transfer in", "counterparty_type": "system"},
        {"kind": "deposit", "counterparty_name": "Card top-up", "counterparty_type": "system"},
        {"kind": "refund", "counterparty_name": "Kredete refunds", "counterparty_type": "system"},
    ]
    out, counts = redact_value(rows)
    assert out == rows and counts == {}


def test_camel_case_type_key() -> None:
    out, _ = redact_value({"counterpartyName": "Shoprite Lekki", "counterpartyType": "merchant"})
    assert out["counterpartyName"] == "Shoprite Lekki"


def test_merchant_name_still_goes_through_recognisers_and_known_names() -> None:
    row = {"counterparty_name": "Mama Put 0803 123 4567 (Tunde Bello)", "counterparty_type": "merchant"}
    out, _ = redact_value(row, known_names=["Tunde Bello"])
    assert out["counterparty_name"] == "Mama Put [PHONE] ([PERSON])"


def test_person_counterparty_with_allowed_name() -> None:
    row = {"counterparty_name": "Ada Obi", "counterparty_type": "person"}
    assert redact_value(row, allow_names=["Ada Obi"])[0] == row
    assert redact_value(row)[0]["counterparty_name"] == "[PERSON]"


# --- names and addresses with diacritics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mrs Ad\u00e9b\u00e1y\u1ecd\u0300 Okafor called", "Mrs [PERSON] called"),
        ("Beneficiary: \u1eccl\u00e1 \u00ccb\u00edd\u00fan", "Beneficiary: [PERSON]"),
        ("Name: Zo\u00eb M\u00fcller, relationship: sister", "Name: [PERSON], relationship: sister"),
        ("Dr. \u00c9mile N\u0303u\u0301n\u0303ez asked", "Dr. [PERSON] asked"),  # decomposed accents
        ("Ship to 12 \u1ecc\u0300ba Akran Avenue, \u00cck\u1eb9j\u00e0, Lagos.", "Ship to [ADDRESS]."),
    ],
)
def test_names_and_addresses_with_diacritics(text: str, expected: str) -> None:
    assert redact(text).text == expected


def test_known_name_with_tone_marks_matches_its_decomposed_spelling() -> None:
    composed = "\u1ecc\u0300l\u00e1 Ad\u00e9b\u00e1y\u1ecd\u0300"
    decomposed = "O\u0323\u0300la\u0301 Ade\u0301ba\u0301yo\u0323\u0300"
    r = redact(f"Payout to {decomposed} today", known_names=[composed])
    assert r.text == "Payout to [PERSON] today"
