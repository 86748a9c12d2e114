"""Field-level envelope encryption and blind indexes for PII (AES-256-GCM, keys wrapped by a master key).

Every value gets its own data key, wrapped with the master key (AES key wrap), so a database dump
reveals nothing and the master key can be rotated by re-wrapping data keys only. Lookups on an
encrypted field use a keyed HMAC of the value normalised for its kind (a blind index).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from typing import Literal

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from stores.errors import InvalidData

_PREFIX = "enc1"

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

    def __init__(self, master_key: str | bytes, key_id: str = "local-1") -> None:
        raw = master_key.encode() if isinstance(master_key, str) else master_key
        # Derive fixed-size keys so any secret string works as the master key.
        self._kek = hashlib.sha256(b"kredete-kek|" + raw).digest()
        self._index_key = hashlib.sha256(b"kredete-blind-index|" + raw).digest()
        self.key_id = key_id

    def encrypt(self, plaintext: str, context: str) -> str:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ct = AESGCM(dek).encrypt(nonce, plaintext.encode(), context.encode())
        wrapped = aes_key_wrap(self._kek, dek)
        return ".".join((_PREFIX, self.key_id, _b64(wrapped), _b64(nonce + ct)))

    def decrypt(self, token: str, context: str) -> str:
        try:
            prefix, _key_id, wrapped, body = token.split(".")
            if prefix != _PREFIX:
                raise ValueError(prefix)
            dek = aes_key_unwrap(self._kek, _unb64(wrapped))
            raw = _unb64(body)
            return AESGCM(dek).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (ValueError, InvalidTag, InvalidUnwrap) as exc:
            raise InvalidData("encrypted field cannot be decrypted with this key and context", store="crypto") from exc

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
