"""Field-level encryption and blind indexes for PII (AES-256-GCM).

Personal data is encrypted under its owner's own data key (`enc2.<user id hex>.<body>`), held in the key
store (`stores.keys`) outside every data backup: destroying a user's key erases every copy of their
ciphertext at once (crypto-shredding). The key store keeps the data keys wrapped by the master key, so a
master-key rotation re-wraps them there and no ciphertext changes.

Older tokens (`enc1.<key id>.<wrapped>.<body>`: a per-value data key wrapped by the master key inline) still
decrypt; a cipher holds the current master key plus old ones (a keyring), and `rewrap` moves an `enc1` token
to the current key without touching its body (`kredete db rotate-keys`). Lookups on an encrypted field use a
keyed HMAC of the value normalised for its kind (a blind index); its key is separate, since a hash cannot be
re-wrapped. An erased user's blind indexes are removed with their row (`kredete dsr erase`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from stores.errors import InvalidData, StoreConfigError

if TYPE_CHECKING:
    from stores.keys import Keyring, KeyStore

_PREFIX = "enc1"
_USER_PREFIX = "enc2"
#: How long a process keeps a user's data key after reading it from the key store: a key destroyed by an
#: erasure in another process stops decrypting here within this many seconds.
USER_KEY_CACHE_S = 10.0
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
                 old_keys: Mapping[str, str | bytes] | None = None, index_key: str | bytes | None = None,
                 keys: KeyStore | None = None) -> None:
        """`master_key` (named `key_id`) wraps new data keys; `old_keys` (id -> secret) only unwrap. The blind
        index key defaults to the master key: keep passing the old one as `index_key` after a rotation.
        `keys`: the key store of the per-user data keys (`encrypt_for`, and decrypting `enc2` tokens)."""
        keys = {**(old_keys or {}), key_id: master_key}
        if bad := [k for k in keys if not _KEY_ID.match(k)]:
            raise StoreConfigError(f"key ids must be 1-40 letters, digits, '_' or '-': {bad}", store="crypto")
        # Derive fixed-size keys so any secret string works as the master key.
        self._keks = {kid: hashlib.sha256(b"kredete-kek|" + _raw(secret)).digest() for kid, secret in keys.items()}
        self._kek = self._keks[key_id]
        self._index_key = hashlib.sha256(b"kredete-blind-index|" + _raw(index_key or master_key)).digest()
        self.key_id = key_id
        self.keys = keys
        self._user_keys: dict[str, tuple[float, UserCipher]] = {}
        self._cache_lock = threading.Lock()

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
        cipher = cls(master, getattr(settings, "field_encryption_key_id", "local-1"), old_keys=old,
                     index_key=secret("field_encryption_index_key"))
        from stores.keys import open_keystore

        cipher.keys = open_keystore(settings, cipher.keyring())
        return cipher

    def fingerprint_key(self) -> bytes:
        """Key of the erasure fingerprints (`stores.fingerprints`), derived from the blind-index key: it survives a
        master-key rotation as the blind indexes do."""
        return hmac.new(self._index_key, b"kredete-dsr-fingerprints", hashlib.sha256).digest()

    def link_signing_key(self) -> bytes:
        """Key of the document download links (`services.document_tokens`), derived from the blind-index key:
        every process of a deployment derives the same one, so a link any of them signs opens at any HTTP server."""
        return hmac.new(self._index_key, b"kredete-document-links", hashlib.sha256).digest()

    def keyring(self) -> Keyring:
        """The master keys (derived key-encryption keys) that wrap the key store's data keys."""
        from stores.keys import Keyring

        return Keyring(dict(self._keks), self.key_id)

    # --- per-user data keys ---------------------------------------------------------------------
    def _store(self) -> KeyStore:
        if self.keys is None:
            raise StoreConfigError("no key store configured for per-user data keys", store="crypto")
        return self.keys

    def user(self, user_id: object, *, create: bool = False) -> UserCipher:
        """The cipher of one user's data key (cached briefly). KeyDestroyed once the user was erased; with
        `create`, a user without a key gets one (writers), else InvalidData (readers)."""
        uid = _canonical(user_id)
        now = time.monotonic()
        with self._cache_lock:
            hit = self._user_keys.get(uid)
        if hit is not None and hit[0] > now:
            return hit[1]
        return self.users([uid], create=create)[uid]

    def users(self, user_ids: Iterable[object], *, create: bool = False) -> dict[str, UserCipher]:
        """Ciphers of many users at once (one key-store round trip), by canonical user id."""
        from stores.keys import KeyDestroyed

        ids = sorted({_canonical(u) for u in user_ids})
        store = self._store()
        keys = store.get_or_create(ids) if create else store.get(ids)
        missing = [u for u in ids if u not in keys]
        if missing:
            gone = store.destroyed(missing)
            if gone:
                raise KeyDestroyed(f"the data key of user {min(gone)} was destroyed at {gone[min(gone)]} "
                                   "(the user was erased)", store="crypto")
            raise InvalidData(f"no data key for user {missing[0]}", store="crypto")
        out = {u: UserCipher(u, keys[u]) for u in ids}
        expiry = time.monotonic() + USER_KEY_CACHE_S
        with self._cache_lock:
            for u, c in out.items():
                self._user_keys[u] = (expiry, c)
            if len(self._user_keys) > 50_000:  # bounded: drop the oldest half
                for u in sorted(self._user_keys, key=lambda k: self._user_keys[k][0])[:25_000]:
                    del self._user_keys[u]
        return out

    def forget(self, user_ids: Iterable[object] | None = None) -> None:
        """Drop cached data keys (all, or these users'): after an erasure in this process."""
        with self._cache_lock:
            if user_ids is None:
                self._user_keys.clear()
            else:
                for u in user_ids:
                    self._user_keys.pop(_canonical(u), None)

    def encrypt_for(self, user_id: object, plaintext: str, context: str) -> str:
        """Encrypt one value under its owner's data key (made on first use)."""
        return self.user(user_id, create=True).encrypt(plaintext, context)

    def encrypt(self, plaintext: str, context: str) -> str:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ct = AESGCM(dek).encrypt(nonce, plaintext.encode(), context.encode())
        wrapped = aes_key_wrap(self._kek, dek)
        return ".".join((_PREFIX, self.key_id, _b64(wrapped), _b64(nonce + ct)))

    def decrypt(self, token: str, context: str) -> str:
        """Plaintext of an `enc1` or `enc2` token; InvalidData when it does not decrypt (KeyDestroyed, a kind
        of it, when its owner was erased)."""
        owner = owner_of(token)
        if owner is not None:
            return self.user(owner).decrypt(token, context)
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
        return isinstance(value, str) and value.startswith((_PREFIX + ".", _USER_PREFIX + "."))

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
    """The id of the master key that wrapped a token's data key (None if it is not an `enc1` token)."""
    parts = token.split(".")
    return parts[1] if len(parts) == 4 and parts[0] == _PREFIX else None


def owner_of(token: object) -> str | None:
    """The user whose data key encrypted an `enc2` token (None for anything else)."""
    if not isinstance(token, str) or not token.startswith(_USER_PREFIX + "."):
        return None
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) != 32:
        return None
    try:
        return str(uuid.UUID(hex=parts[1]))
    except ValueError:
        return None


def _canonical(user_id: object) -> str:
    try:
        return str(uuid.UUID(str(user_id)))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidData("user id must be a UUID", store="crypto") from exc


class UserCipher:
    """AES-256-GCM under one user's data key: `enc2.<user id hex>.<nonce + ciphertext>`, with `context`
    (table/column and row) as associated data, so a ciphertext moved to another row or user does not decrypt.
    Also the cipher of S3 document bodies (`seal`/`open`, binary)."""

    __slots__ = ("_aead", "_head", "user_id")

    def __init__(self, user_id: str, key: bytes) -> None:
        self.user_id = user_id
        self._aead = AESGCM(key)
        self._head = f"{_USER_PREFIX}.{uuid.UUID(user_id).hex}."

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        return self._head + _b64(nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode()))

    def decrypt(self, token: str, context: str) -> str:
        if not token.startswith(self._head):
            raise InvalidData("encrypted field belongs to another user", store="crypto")
        try:
            raw = _unb64(token[len(self._head):])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (ValueError, InvalidTag) as exc:
            raise InvalidData("encrypted field cannot be decrypted with this key and context", store="crypto") from exc

    def seal(self, data: bytes, context: str) -> bytes:
        """Binary envelope of a document body: `KRDENC2\n` + nonce + ciphertext (context as associated data)."""
        nonce = os.urandom(12)
        return SEALED_MAGIC + nonce + self._aead.encrypt(nonce, data, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        if not blob.startswith(SEALED_MAGIC):
            raise InvalidData("not a sealed document", store="crypto")
        raw = blob[len(SEALED_MAGIC):]
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except (ValueError, InvalidTag) as exc:
            raise InvalidData("sealed document cannot be decrypted with this key and context",
                              store="crypto") from exc


#: First bytes of an S3 document body sealed under its owner's data key.
SEALED_MAGIC = b"KRDENC2\n"


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
