"""Field-level envelope encryption and blind indexes for PII (AES-256-GCM, keys wrapped by a master key).

Every value gets its own data key, wrapped with the master key (AES key wrap), so a database dump
reveals nothing. Each token names the master key that wrapped it (`enc1.<key id>.<wrapped>.<body>`):
a cipher holds the current key plus old ones (a keyring), writes with the current key, still decrypts
the old, and `rewrap` moves a token to the current key without touching its body (`kredete db
rotate-keys`). Lookups on an encrypted field use a keyed HMAC of the value normalised for its kind (a
blind index); its key is separate, since a hash cannot be re-wrapped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from stores.errors import InvalidData, StoreConfigError

_PREFIX = "enc1"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

#: How a blind-indexed value is normalised before hashing.
BlindIndexKind = Literal["email", "phone", "document"]
#: The kind of each blind-indexed column, so writers and lookups cannot normalise one column two ways.
PURPOSE_KINDS: dict[str, BlindIndexKind] = {"users.email": "email", "users.phone": "phone",
                                            "payment_methods.fingerprint": "document"}
_DOCUMENT_SEPARATORS = re.compile(r"[\s\-]+")


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class FieldCipher:
    """Encrypt/decrypt single field values; `context` (e.g. "users.bvn") is bound as associated data."""

    def __init__(self, master_key: str | bytes, key_id: str = "local-1", *,
                 old_keys: Mapping[str, str | bytes] | None = None, index_key: str | bytes | None = None) -> None:
        """`master_key` (named `key_id`) wraps new data keys; `old_keys` (id -> secret) only unwrap. The blind
        index key defaults to the master key: keep passing the old one as `index_key` after a rotation."""
        keys = {**(old_keys or {}), key_id: master_key}
        if bad := [k for k in keys if not _KEY_ID.match(k)]:
            raise StoreConfigError(f"key ids must be 1-40 letters, digits, '_' or '-': {bad}", store="crypto")
        # Derive fixed-size keys so any secret string works as the master key.
        self._keks = {kid: hashlib.sha256(b"kredete-kek|" + _raw(secret)).digest() for kid, secret in keys.items()}
        self._kek = self._keks[key_id]
        self._index_key = hashlib.sha256(b"kredete-blind-index|" + _raw(index_key or master_key)).digest()
        self.key_id = key_id

    @classmethod
    def from_settings(cls, settings: Any) -> FieldCipher:
        """The keyring of the settings: master key and id, old keys (a JSON object id -> secret), index key."""
        def secret(name: str) -> str | None:
            value = getattr(settings, name, None)
            return value.get_secret_value() if value is not None else None

        master = secret("field_encryption_master_key")
        if master is None:
            raise StoreConfigError("no field-encryption master key configured", store="crypto")
        try:
            old = json.loads(secret("field_encryption_old_keys") or "{}")
        except json.JSONDecodeError as exc:
            raise StoreConfigError("field_encryption_old_keys must be a JSON object of id -> key", store="crypto") \
                from exc
        if not isinstance(old, dict) or not all(isinstance(v, str) for v in old.values()):
            raise StoreConfigError("field_encryption_old_keys must be a JSON object of id -> key", store="crypto")
        return cls(master, getattr(settings, "field_encryption_key_id", "local-1"), old_keys=old,
                   index_key=secret("field_encryption_index_key"))

    def encrypt(self, plaintext: str, context: str) -> str:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ct = AESGCM(dek).encrypt(nonce, plaintext.encode(), context.encode())
        wrapped = aes_key_wrap(self._kek, dek)
        return ".".join((_PREFIX, self.key_id, _b64(wrapped), _b64(nonce + ct)))

    def decrypt(self, token: str, context: str) -> str:
        try:
            dek, body = self._unwrap(token)
            raw = _unb64(body)
            return AESGCM(dek).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (ValueError, InvalidTag, InvalidUnwrap) as exc:
            raise InvalidData("encrypted field cannot be decrypted with this key and context", store="crypto") from exc

    def rewrap(self, token: str) -> str:
        """The same ciphertext with its data key wrapped by the current master key (unchanged if it already is)."""
        if key_id_of(token) == self.key_id:
            return token
        try:
            dek, body = self._unwrap(token)
        except (ValueError, InvalidUnwrap) as exc:
            raise InvalidData("encrypted field cannot be re-wrapped with this keyring", store="crypto") from exc
        return ".".join((_PREFIX, self.key_id, _b64(aes_key_wrap(self._kek, dek)), body))

    def _unwrap(self, token: str) -> tuple[bytes, str]:
        prefix, key_id, wrapped, body = token.split(".")
        if prefix != _PREFIX or key_id not in self._keks:
            raise ValueError("unknown format or key id")
        return aes_key_unwrap(self._keks[key_id], _unb64(wrapped)), body

    def batch(self) -> BatchEncryptor:
        """An encryptor for many values at once: one data key for the whole batch, wrapped once.

        Tokens have the usual format (each carries the wrapped data key) and decrypt with `decrypt`;
        every value still gets its own random 96-bit nonce and its own associated data. Meant for bulk
        loads (the seeder), where wrapping a fresh key per value dominates the cost.
        """
        return BatchEncryptor(self)

    @staticmethod
    def is_encrypted(value: object) -> bool:
        return isinstance(value, str) and value.startswith(_PREFIX + ".")

    def blind_index(self, value: str, purpose: str, kind: BlindIndexKind | None = None, *,
                    region: str | None = None) -> str:
        """Keyed hash for equality lookups of `value` normalised for its kind (see `normalise`).

        The kind of a known purpose (`PURPOSE_KINDS`, `kyc.<document type>`) is fixed; other purposes must
        pass one. `region` (ISO country) lets a phone number in national format be read.
        """
        norm = normalise(value, kind_of(purpose, kind), region=region)
        return hmac.new(self._index_key, f"{purpose}|{norm}".encode(), hashlib.sha256).hexdigest()


def _raw(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def key_id_of(token: str) -> str | None:
    """The id of the master key that wrapped a token's data key (None if it is not a token)."""
    parts = token.split(".")
    return parts[1] if len(parts) == 4 and parts[0] == _PREFIX else None


def kind_of(purpose: str, kind: BlindIndexKind | None = None) -> BlindIndexKind:
    """The normalisation of a blind index purpose; a known purpose refuses a different kind."""
    fixed = PURPOSE_KINDS.get(purpose) or ("document" if purpose.startswith("kyc.") else None)
    if fixed is not None and kind not in (None, fixed):
        raise ValueError(f"blind index {purpose!r} is normalised as {fixed}, not {kind}")
    if fixed is None and kind is None:
        raise ValueError(f"blind index {purpose!r} needs a kind (email, phone or document)")
    return fixed or kind  # type: ignore[return-value]


def normalise(value: str, kind: BlindIndexKind, *, region: str | None = None) -> str:
    """The canonical form a blind index hashes; two inputs collide only if they mean the same thing.

    - email: trimmed and lower-cased, every other character kept (a.b@x.io and ab@x.io stay distinct);
    - phone: E.164 digits (+234 803 123 4567, 08031234567 with region NG -> 2348031234567);
    - document: upper-cased without spaces and dashes (A12-345 678 -> A12345678).
    """
    text = unicodedata.normalize("NFC", value).strip()
    if kind == "email":
        return text.lower()
    if kind == "document":
        return _DOCUMENT_SEPARATORS.sub("", text).upper()
    if kind == "phone":
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_possible_number(number):
            raise InvalidData("not a phone number (give +country code, or the region of a national number)",
                              store="crypto")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    raise ValueError(f"unknown blind index kind {kind!r}")


class BatchEncryptor:
    """`FieldCipher.encrypt` with one data key shared by a batch of values (see `FieldCipher.batch`).

    Keep batches well below 2**32 values per key (random nonces); the seeder uses one per few hundred users.
    """

    def __init__(self, cipher: FieldCipher) -> None:
        dek = AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(dek)
        self._head = ".".join((_PREFIX, cipher.key_id, _b64(aes_key_wrap(cipher._kek, dek)))) + "."

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        return self._head + _b64(nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode()))
