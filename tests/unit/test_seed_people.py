"""Synthetic people: deterministic, unique identifiers, plausible local formats."""

from __future__ import annotations

import re
from collections import Counter

import phonenumbers
import pytest

from kredete.seed.people import COUNTRY_WEIGHTS, local_format, person, user_id_for

PEOPLE = [person(42, i) for i in range(1500)]


def test_same_seed_and_index_give_the_same_person():
    assert person(42, 7) == person(42, 7)
    assert person(42, 7) != person(43, 7)
    assert person(42, 7).user_id == user_id_for(42, 7)


def test_identifiers_phones_and_emails_are_unique():
    for attr in ("user_id", "phone", "email"):
        values = [getattr(p, attr) for p in PEOPLE]
        assert len(set(values)) == len(values), attr
    ids = [(kind, v) for p in PEOPLE for kind, v in p.national_ids.items()]
    assert len(set(ids)) == len(ids)


def test_country_mix_covers_every_market():
    counts = Counter(p.country for p in PEOPLE)
    assert set(counts) == set(COUNTRY_WEIGHTS)
    assert counts["NG"] > counts["KE"]


@pytest.mark.parametrize("country", sorted(COUNTRY_WEIGHTS))
def test_phone_numbers_are_valid_mobiles_of_their_country(country):
    sample = [p for p in PEOPLE if p.country == country][:50]
    for p in sample:
        parsed = phonenumbers.parse(p.phone)
        assert phonenumbers.region_code_for_number(parsed) == country or country == "US", p.phone
        assert phonenumbers.is_valid_number(parsed), p.phone
        assert phonenumbers.number_type(parsed) in (phonenumbers.PhoneNumberType.MOBILE,
                                                    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE), p.phone


def test_national_identifier_formats():
    for p in PEOPLE:
        ids = p.national_ids
        if p.country == "NG":
            assert re.fullmatch(r"22\d{9}", ids["bvn"]) and re.fullmatch(r"\d{11}", ids["nin"])
            assert p.bvn == ids["bvn"]
        elif p.country == "GH":
            assert re.fullmatch(r"GHA-\d{9}-\d", ids["ghana_card"])
        elif p.country == "KE":
            assert re.fullmatch(r"\d{8}", ids["kenya_national_id"])
        elif p.country == "GB":
            assert re.fullmatch(r"[A-Z]{2}\d{6}[A-D]", ids["national_insurance"])
        else:
            area, group, serial = map(int, ids["ssn"].split("-"))
            assert 1 <= area <= 899 and area != 666 and group >= 1 and serial >= 1


def test_names_addresses_and_dates_are_plausible():
    for p in PEOPLE[:300]:
        assert p.first_name and p.last_name and p.full_name == f"{p.first_name} {p.last_name}"
        assert "\n" in p.address or p.country in ("US", "GB")
        assert 18 <= (2025 - p.date_of_birth.year) <= 71
        assert "@" in p.email
    lagos = [p for p in PEOPLE if p.country == "NG"][:200]
    assert any("Lagos" in p.address or "Abuja" in p.address for p in lagos)


def test_local_formats_people_type():
    assert local_format("+2348031234567", "NG") == "0803 123 4567"
    assert local_format("+233241234567", "GH") == "024 123 4567"
    assert local_format("+254712345678", "KE") == "0712 345678"
    assert local_format("+447700900123", "GB") == "07700 900123"
