"""User lookups through blind indexes against the real database: distinct people never collide."""

from __future__ import annotations

import pytest

from stores.postgres import UserRepository
from tests.integration.postgres.factories import add_user


@pytest.fixture(scope="module")
async def people(app_store, cipher):
    pairs = {}
    for email, phone in (("ab@c.com", "+2348031110001"), ("a@bc.com", "+2348031110002"),
                         ("john.doe@x.io", "+233241110003"), ("johndoe@x.io", "+254712110004")):
        # Before emails kept their punctuation, the second of each pair hit the unique blind index.
        pairs[email] = await add_user(app_store, cipher, email=email, phone=phone)
    return pairs


async def test_find_by_email_returns_the_right_user_of_a_lookalike_pair(app_store, cipher, people):
    users = UserRepository(app_store, cipher=cipher, replica_reads=False)
    assert len(set(people.values())) == 4
    for email, uid in people.items():
        assert await users.find_by_email(email) == uid
    assert await users.find_by_email("  John.Doe@X.IO ") == people["john.doe@x.io"]
    assert await users.find_by_email("jo.hndoe@x.io") is None


async def test_find_by_phone_accepts_international_and_national_formats(app_store, cipher, people):
    users = UserRepository(app_store, cipher=cipher, replica_reads=False)
    assert await users.find_by_phone("+234 803 111 0002") == people["a@bc.com"]
    assert await users.find_by_phone("024 111 0003", region="GH") == people["john.doe@x.io"]
    assert await users.find_by_phone("024 111 0003", region="NG") is None
