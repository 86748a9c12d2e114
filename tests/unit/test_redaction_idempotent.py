"""Redacting a redacted text again changes nothing: the trace recorder re-redacts each answer with mask-everything,
and before this it turned "to [PERSON]" into "to [[PERSON]]" and counted the mask as a second person."""

from __future__ import annotations

from typing import Any

import pytest

from guards.redaction import RedactionPolicy, redact, redact_value
from guards.redaction.masking import MASK_ALL
from tests.unit.test_redaction_memo import KNOWN_ADDRESSES, KNOWN_NAMES, PAYLOADS

HASH = RedactionPolicy(default="hash", hash_key="k" * 32)


@pytest.mark.parametrize("policy", [MASK_ALL, HASH], ids=["mask_all", "hash"])
@pytest.mark.parametrize("payload", PAYLOADS[2:], ids=["records", "nested", "list"])  # the ones holding PII
def test_a_second_pass_with_mask_all_finds_nothing(payload: Any, policy: RedactionPolicy) -> None:
    known = {"known_names": KNOWN_NAMES, "known_addresses": KNOWN_ADDRESSES}
    once, counts = redact_value(payload, policy, **known)
    assert counts, "the payload holds PII"  # else the second pass below proves nothing
    twice, again = redact_value(once, MASK_ALL, **known)
    assert twice == once
    assert again == {}


def test_the_trace_case_from_the_report() -> None:
    row = {"counterparty_name": "[PERSON]", "description": "to [PERSON] for rent", "card": "[CARD_NUMBER:1a2b3c4d]"}
    assert redact_value(row) == (row, {})


def test_a_delimited_person_name_field_keeps_its_marks_and_is_masked_once() -> None:
    """A person-name field whose value the output guard marked as untrusted text: its content is the finding; the
    marks stay (a second pass used to turn «data»[PERSON]«/data» into a bare [PERSON] and count it again)."""
    once, counts = redact_value({"counterparty_name": "«data»Ada Obi«/data»"})
    assert once == {"counterparty_name": "«data»[PERSON]«/data»"} and counts == {"PERSON": 1}
    assert redact_value(once) == (once, {})
    assert redact_value({"counterparty_name": " «data»«/data» "}) == ({"counterparty_name": " «data»«/data» "}, {})


def test_pii_written_next_to_a_literal_mask_is_still_found() -> None:
    """A mask is read as blanks, not as a span that hides its neighbours."""
    text = "[PERSON]ada@kredete.ng, [EMAIL] 0803 123 4567 and [PERSON] Grace Will"
    out = redact(text, known_names=["Grace Will"])
    assert out.text == "[PERSON][EMAIL], [EMAIL] [PHONE] and [PERSON] [PERSON]"
    assert sorted(f.kind.value for f in out.findings) == ["EMAIL", "PERSON", "PHONE"]


def test_only_the_engines_own_masks_are_blanked() -> None:
    """Brackets around real values, or a made-up kind, are read as text."""
    out = redact("[ada@kredete.ng] [NOTAKIND] [PERSON:zz] call [0803 123 4567]")
    assert out.text == "[[EMAIL]] [NOTAKIND] [PERSON:zz] call [[PHONE]]"
