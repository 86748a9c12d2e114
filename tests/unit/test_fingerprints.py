"""Keyed fingerprints find a person's values again in raw text, however they are written, without the values."""

from __future__ import annotations

from stores.fingerprints import Fingerprinter, judge

KEY = b"k" * 32
VALUES = {"email": ["Ada.Obi@Example.com"], "phone": ["+2348031234567"], "document": ["22212345678", "AB 12 34 56 C"],
          "name": ["Ada Obi"], "address": ["12 Allen Avenue\nIkeja, Lagos"], "dob": ["1990-05-03"]}


def _matcher():
    fp = Fingerprinter(KEY)
    return fp, fp.matcher(fp.capture(VALUES, region="NG"))


def test_values_are_found_in_their_usual_spellings():
    _, m = _matcher()
    assert m.kinds("reach me at ada.obi@example.com please") == {"email", "name"}  # the name is in it too
    assert m.kinds("call 0803 123 4567 when it lands") == {"phone"}
    assert m.kinds("phone +234-803-123-4567") == {"phone"}
    assert m.kinds("my BVN is 22212345678 if the bank asks") == {"document"}
    assert m.kinds("NI number ab123456c on file") == {"document"}
    assert m.kinds("Customer ADA OBI called") == {"name"}
    assert m.kinds("Send to Ama at 12 Allen Avenue") == {"address"}
    assert m.kinds("born 03/05/1990") == {"dob"}


def test_other_people_and_near_misses_are_not_found():
    _, m = _matcher()
    for text in ("adaobi@example.org", "0803 123 4568", "22212345679", "Ada Okafor", "13 Allen Avenue",
                 "1990-05-04", "2026-12-06T09:17:37Z", "9c1e8a2b-0000-4000-8000-000000000000"):
        assert m.kinds(text) == frozenset(), text


def test_the_key_matters_and_no_value_is_kept():
    fp, _ = _matcher()
    prints = fp.capture(VALUES, region="NG")
    text = repr(prints)
    assert "Ada" not in text and "2348031234567" not in text and "22212345678" not in text
    other = Fingerprinter(b"x" * 32).matcher(prints)
    assert other.kinds("ada.obi@example.com") == frozenset()


def test_weak_values_count_only_when_tied_to_the_user():
    _, m = _matcher()
    uid = "11111111-2222-4333-8444-555555555555"
    assert not judge(["Customer Ada Obi"], uid, m).attributable  # a name alone: many people share it
    assert judge(["Customer Ada Obi", f"user {uid}"], uid, m).attributable  # tied to the user's id
    assert judge(["Ada Obi, born 1990-05-03"], uid, m).attributable  # two of their values together
    assert judge(["ada.obi@example.com"], uid, m).attributable  # a strong value alone
    assert judge([f"enc2.{uid.replace('-', '')}.abc"], uid, m).id_ref  # their ciphertext names them
