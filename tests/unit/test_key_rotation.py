"""Master-key rotation: a keyring writes with the current key, still reads the old, and re-wraps tokens."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from config.settings import Settings
from stores.crypto import FieldCipher, key_id_of
from stores.errors import InvalidData, StoreConfigError

OLD, NEW = "old-master-secret", "new-master-secret"


def test_new_writes_use_the_current_key_and_old_tokens_still_decrypt():
    old = FieldCipher(OLD)  # id local-1, as every existing ciphertext
    token = old.encrypt("ada@example.com", "users.email|1")
    ring = FieldCipher(NEW, "k2", old_keys={"local-1": OLD})
    assert ring.decrypt(token, "users.email|1") == "ada@example.com"
    fresh = ring.encrypt("kofi@example.com", "users.email|2")
    assert key_id_of(fresh) == "k2" and key_id_of(token) == "local-1"
    with pytest.raises(InvalidData):  # the old key alone cannot read what the new one wrapped
        old.decrypt(fresh, "users.email|2")
    with pytest.raises(InvalidData):  # a key id the ring does not hold is refused, not tried with another key
        FieldCipher(NEW, "k2").decrypt(token, "users.email|1")


def test_rewrap_moves_a_token_to_the_current_key_without_touching_its_body():
    old = FieldCipher(OLD)
    single, batched = old.encrypt("22212345678", "kyc|1"), old.batch().encrypt("0123456789", "pm|1")
    ring = FieldCipher(NEW, "k2", old_keys={"local-1": OLD})
    for token, context, plain in ((single, "kyc|1", "22212345678"), (batched, "pm|1", "0123456789")):
        moved = ring.rewrap(token)
        assert key_id_of(moved) == "k2" and moved.split(".")[3] == token.split(".")[3]
        assert FieldCipher(NEW, "k2").decrypt(moved, context) == plain  # the old key is no longer needed
        assert ring.rewrap(moved) == moved
    with pytest.raises(InvalidData):
        FieldCipher(NEW, "k2").rewrap(single)


def test_the_blind_index_key_is_kept_across_a_rotation():
    before = FieldCipher(OLD).blind_index("ada@example.com", "users.email")
    kept = FieldCipher(NEW, "k2", old_keys={"local-1": OLD}, index_key=OLD)
    assert kept.blind_index("ada@example.com", "users.email") == before
    assert FieldCipher(NEW, "k2").blind_index("ada@example.com", "users.email") != before


def test_keyring_from_settings():
    s = Settings(field_encryption_master_key=SecretStr(NEW), field_encryption_key_id="k2",
                 field_encryption_old_keys=SecretStr(json.dumps({"local-1": OLD})),
                 field_encryption_index_key=SecretStr(OLD))
    ring = FieldCipher.from_settings(s)
    assert ring.key_id == "k2"
    assert ring.decrypt(FieldCipher(OLD).encrypt("x", "c"), "c") == "x"
    assert ring.blind_index("x@y.io", "users.email") == FieldCipher(OLD).blind_index("x@y.io", "users.email")
    with pytest.raises(StoreConfigError, match="JSON object"):
        FieldCipher.from_settings(s.model_copy(update={"field_encryption_old_keys": SecretStr("[1]")}))
    with pytest.raises(StoreConfigError, match="key ids"):
        FieldCipher(NEW, "bad.id")
