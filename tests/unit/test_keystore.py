"""The key store of per-user data keys (a SQLite file): keys are random, wrapped, destroyed for good."""

from __future__ import annotations

import uuid

import pytest

from stores.crypto import FieldCipher, UserCipher, owner_of
from stores.errors import InvalidData
from stores.keys import KeyDestroyed, KeyStore


@pytest.fixture
def cipher(tmp_path) -> FieldCipher:
    c = FieldCipher("master-secret")
    c.keys = KeyStore(tmp_path / "keys.sqlite3", c.keyring())
    return c


def test_each_user_gets_a_random_key_of_their_own(cipher):
    a, b = uuid.uuid4(), uuid.uuid4()
    keys = cipher.keys.get_or_create([a, b])
    assert len({*keys.values()}) == 2 and all(len(k) == 32 for k in keys.values())
    assert cipher.keys.get_or_create([a]) == {str(a): keys[str(a)]}  # stable once made
    token = cipher.encrypt_for(a, "Ada Obi", "users.full_name|x")
    assert owner_of(token) == str(a) and "Ada" not in token
    assert cipher.decrypt(token, "users.full_name|x") == "Ada Obi"
    with pytest.raises(InvalidData):
        cipher.decrypt(token, "users.full_name|y")  # bound to its row and column


def test_a_destroyed_key_leaves_no_trace_in_the_files_and_cannot_come_back(cipher, tmp_path):
    import sqlite3

    a = uuid.uuid4()
    cipher.keys.get_or_create([a, uuid.uuid4()])
    token = cipher.encrypt_for(a, "22212345678", "kyc|1")
    with sqlite3.connect(tmp_path / "keys.sqlite3") as db:
        (wrapped,) = db.execute("SELECT wrapped FROM user_keys WHERE user_id = ?", (str(a),)).fetchone()
    assert any(wrapped in p.read_bytes() for p in tmp_path.iterdir())  # on disk (db or WAL) while it exists

    assert cipher.keys.destroy([a], request_id="r1") == 1
    assert cipher.keys.destroy([a], request_id="r1") == 0  # idempotent
    assert not any(wrapped in p.read_bytes() for p in tmp_path.iterdir())  # zeroed, WAL truncated
    cipher.forget()
    with pytest.raises(KeyDestroyed):
        cipher.decrypt(token, "kyc|1")
    with pytest.raises(KeyDestroyed):
        cipher.encrypt_for(a, "new data", "kyc|1")  # nothing new can be written for an erased user
    assert str(a) in cipher.keys.destroyed([a])


def test_rotation_rewraps_the_keys_without_touching_ciphertext(tmp_path):
    old = FieldCipher("old-master")
    old.keys = KeyStore(tmp_path / "k.sqlite3", old.keyring())
    a = uuid.uuid4()
    token = old.encrypt_for(a, "ada@example.com", "users.email|1")
    new = FieldCipher("new-master", "k2", old_keys={"local-1": "old-master"})
    new.keys = KeyStore(tmp_path / "k.sqlite3", new.keyring())
    assert new.keys.rewrap() == 1
    only_new = FieldCipher("new-master", "k2")
    only_new.keys = KeyStore(tmp_path / "k.sqlite3", only_new.keyring())
    assert only_new.decrypt(token, "users.email|1") == "ada@example.com"


def test_sealed_documents_open_only_at_their_key_and_under_their_owner(cipher):
    a = uuid.uuid4()
    user: UserCipher = cipher.user(a, create=True)
    blob = user.seal(b"KYC SUMMARY Ada Obi", "s3.object|users/a/kyc.txt")
    assert b"Ada" not in blob
    assert user.open(blob, "s3.object|users/a/kyc.txt") == b"KYC SUMMARY Ada Obi"
    with pytest.raises(InvalidData):
        user.open(blob, "s3.object|users/b/kyc.txt")
