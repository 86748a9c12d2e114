"""Blind indexes: normalised per kind, so different values never share a hash and one value has one hash."""

from __future__ import annotations

import pytest

from stores.crypto import FieldCipher, normalise
from stores.errors import InvalidData

CIPHER = FieldCipher("unit-test-master-key")


@pytest.mark.parametrize(("a", "b"), [("ab@c.com", "a@bc.com"), ("john.doe@x.io", "johndoe@x.io"),
                                      ("a+b@x.io", "ab@x.io"), ("o'neil@x.io", "oneil@x.io")])
def test_different_emails_get_different_indexes(a, b):
    assert CIPHER.blind_index(a, "users.email") != CIPHER.blind_index(b, "users.email")


def test_one_email_in_different_case_or_padding_gets_one_index():
    assert CIPHER.blind_index("  John.Doe@X.io ", "users.email") == CIPHER.blind_index("john.doe@x.io", "users.email")
    assert normalise("  John.Doe@X.io ", "email") == "john.doe@x.io"


def test_phones_are_compared_as_e164_digits():
    e164 = CIPHER.blind_index("+2348031234567", "users.phone")
    assert CIPHER.blind_index("+234 803 123 4567", "users.phone") == e164
    assert CIPHER.blind_index("0803 123 4567", "users.phone", region="NG") == e164
    assert CIPHER.blind_index("024 123 4567", "users.phone", region="GH") == CIPHER.blind_index(
        "+233241234567", "users.phone")
    assert normalise("024 123 4567", "phone", region="GH") != normalise("024 123 4567", "phone", region="NG")
    assert normalise("+44 7700 900123", "phone") == "447700900123"
    with pytest.raises(InvalidData):
        CIPHER.blind_index("0803 123 4567", "users.phone")  # national format without a region
    with pytest.raises(InvalidData):
        CIPHER.blind_index("call me", "users.phone")


def test_documents_ignore_case_spaces_and_dashes_only():
    assert normalise(" ab12-345 678 ", "document") == "AB12345678"
    assert CIPHER.blind_index("qq 12 34 56 c", "kyc.national_insurance") == CIPHER.blind_index(
        "QQ123456C", "kyc.national_insurance")
    assert CIPHER.blind_index("A1/2", "kyc.passport") != CIPHER.blind_index("A12", "kyc.passport")


def test_the_purpose_fixes_the_kind_so_writers_and_lookups_agree():
    # The seeder passes only the purpose; repositories pass the kind too: same hash.
    assert CIPHER.blind_index("X@Y.io", "users.email") == CIPHER.blind_index("X@Y.io", "users.email", "email")
    with pytest.raises(ValueError, match="normalised as email"):
        CIPHER.blind_index("x@y.io", "users.email", "document")
    with pytest.raises(ValueError, match="needs a kind"):
        CIPHER.blind_index("x", "some.new_column")
    assert CIPHER.blind_index("x@y.io", "some.new_column", "email") != CIPHER.blind_index("x@y.io", "users.email")
