"""Client-side field-level encryption of PII (SSN/BVN/NIN in bureau data, account numbers).

Default (`UserKeyFieldEncryption`, when a key store is given): each value is encrypted under its owner's own
data key (`stores.crypto`, `enc2.` tokens; the owner is the document's `user_id`), so erasing the user
(destroying the key, `kredete dsr erase`) makes every copy unreadable, backups of the credit store included.

Older backends, still readable: pymongo explicit encryption (libmongocrypt via `pymongocrypt`, one shared data
key in the `__keyvault` collection: that key lives in the credit store itself, so its backups carry it and it
cannot shred one user) and envelope encryption under the master key (`enc1.`). Plaintext leaves only through
`reveal_paths` with `reveal=True`, which the repositories pass only for a valid `RevealGrant`
(`stores.mongo.reveal`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from bson.binary import STANDARD, Binary
from bson.codec_options import CodecOptions
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pymongo.asynchronous.database import AsyncDatabase

from stores.crypto import FieldCipher
from stores.errors import InvalidData

#: What a reader without PII permission sees in place of an encrypted value.
MASK = "[encrypted]"
ENCRYPTED_SUBTYPE = 6
KEY_VAULT = "__keyvault"
DATA_KEY_ALT_NAME = "kredete-pii-v1"


class FieldEncryption(ABC):
    """Encrypt/decrypt one field value; `field` names the field (bound as context where supported)."""

    kind: str

    def __init__(self, master_key: str | bytes, *, cipher: FieldCipher | None = None) -> None:
        self._envelope = cipher or FieldCipher(master_key)

    @abstractmethod
    async def encrypt(self, value: str, field: str, user_id: str | None = None) -> Any: ...

    async def decrypt(self, value: Any, field: str) -> str:
        if FieldCipher.is_encrypted(value):
            return self._envelope.decrypt(value, field)
        raise InvalidData("value is not encrypted with a known scheme", store="mongo")

    @staticmethod
    def is_encrypted(value: Any) -> bool:
        return FieldCipher.is_encrypted(value) or (isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE)

    def blind_index(self, value: str, purpose: str) -> str:
        return self._envelope.blind_index(value, purpose)

    async def close(self) -> None:
        return None


class EnvelopeFieldEncryption(FieldEncryption):
    """AES-256-GCM per value, data key wrapped by the master key (`stores.crypto.FieldCipher`)."""

    kind = "envelope"

    async def encrypt(self, value: str, field: str, user_id: str | None = None) -> str:
        return self._envelope.encrypt(value, field)


class UserKeyFieldEncryption(FieldEncryption):
    """AES-256-GCM under the owner's own data key (`enc2.`), from the key store: erasable per user.

    `legacy` decrypts values an older explicit-encryption backend wrote (BSON binary subtype 6)."""

    kind = "user-key"

    def __init__(self, cipher: FieldCipher, *, legacy: FieldEncryption | None = None) -> None:
        if cipher.keys is None:
            raise InvalidData("per-user field encryption needs the key store", store="mongo")
        super().__init__(b"", cipher=cipher)
        self._legacy = legacy

    async def encrypt(self, value: str, field: str, user_id: str | None = None) -> str:
        if user_id is None:
            raise InvalidData(f"{field}: encrypting personal data needs its owner's user_id", store="mongo")
        return self._envelope.encrypt_for(user_id, value, field)

    async def decrypt(self, value: Any, field: str) -> str:
        if isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE and self._legacy is not None:
            return await self._legacy.decrypt(value, field)
        return await super().decrypt(value, field)

    async def close(self) -> None:
        if self._legacy is not None:
            await self._legacy.close()


class ExplicitFieldEncryption(FieldEncryption):
    """pymongo explicit encryption (AEAD_AES_256_CBC_HMAC_SHA_512-Random) with a local KMS key."""

    kind = "mongo-explicit"

    def __init__(self, master_key: str | bytes, db: AsyncDatabase) -> None:
        super().__init__(master_key)
        from pymongo.asynchronous.encryption import AsyncClientEncryption

        raw = master_key.encode() if isinstance(master_key, str) else master_key
        local_key = HKDF(algorithm=hashes.SHA256(), length=96, salt=b"kredete", info=b"mongo-local-kms").derive(raw)
        self._ce = AsyncClientEncryption({"local": {"key": local_key}}, f"{db.name}.{KEY_VAULT}",
                                          db.client, CodecOptions(uuid_representation=STANDARD))
        self._db = db
        self._key_id: Any = None

    async def _data_key(self) -> Any:
        if self._key_id is None:
            doc = await self._ce.get_key_by_alt_name(DATA_KEY_ALT_NAME)
            if doc is None:
                try:
                    self._key_id = await self._ce.create_data_key("local", key_alt_names=[DATA_KEY_ALT_NAME])
                except Exception:  # a concurrent creator won the unique alt-name index
                    doc = await self._ce.get_key_by_alt_name(DATA_KEY_ALT_NAME)
                    if doc is None:
                        raise
            if doc is not None:
                self._key_id = doc["_id"]
        return self._key_id

    async def encrypt(self, value: str, field: str, user_id: str | None = None) -> Binary:
        from pymongo.encryption import Algorithm

        return await self._ce.encrypt(value, Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random,
                                      key_id=await self._data_key())

    async def decrypt(self, value: Any, field: str) -> str:
        if isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE:
            try:
                return await self._ce.decrypt(value)
            except Exception as exc:
                raise InvalidData("encrypted field cannot be decrypted with this key", store="mongo") from exc
        return await super().decrypt(value, field)

    async def close(self) -> None:
        await self._ce.close()


async def ensure_key_vault(db: AsyncDatabase) -> None:
    """Unique index on key alt names (plain unique: FerretDB 1.x has no partial indexes)."""
    await db[KEY_VAULT].create_index("keyAltNames", unique=True, name="uniq_key_alt_names")


async def open_field_encryption(db: AsyncDatabase, master_key: str | bytes, *,
                                mode: str = "auto", cipher: FieldCipher | None = None) -> FieldEncryption:
    """With `cipher` (a FieldCipher with its key store): per-user keys (`UserKeyFieldEncryption`), reading
    older explicit-encryption values too. Without: `auto` is explicit encryption when `pymongocrypt` is
    importable, else envelope; or force one."""
    if mode not in ("auto", "explicit", "envelope"):
        raise ValueError(mode)
    if cipher is not None and cipher.keys is not None:
        legacy = None
        try:
            import pymongocrypt
        except ImportError:
            pass
        else:
            if await db[KEY_VAULT].estimated_document_count():  # only where old values can exist
                legacy = ExplicitFieldEncryption(master_key, db)
        return UserKeyFieldEncryption(cipher, legacy=legacy)
    if mode != "envelope":
        try:
            import pymongocrypt  # noqa: F401
        except ImportError:
            if mode == "explicit":
                raise
        else:
            await ensure_key_vault(db)
            return ExplicitFieldEncryption(master_key, db)
    return EnvelopeFieldEncryption(master_key)


# document helpers -----------------------------------------------------------------------------
def _walk(doc: Any, parts: list[str]) -> Iterable[tuple[dict, str]]:
    """Yield (container, key) for a path like `accounts[].account_number`."""
    if not parts or not isinstance(doc, dict):
        return
    head, rest = parts[0], parts[1:]
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if key not in doc:
        return
    if not rest:
        yield doc, key
        return
    targets = doc[key] if many and isinstance(doc[key], list) else [doc[key]]
    for t in targets:
        yield from _walk(t, rest)


async def encrypt_paths(enc: FieldEncryption, doc: dict[str, Any], paths: Iterable[str], context: str) -> None:
    """Encrypt, in place, the string values at `paths` (already encrypted values are left alone), under the
    key of the document's owner (`user_id`) where the backend keys per user."""
    owner = doc.get("user_id")
    for path in paths:
        field = f"{context}.{path.replace('[]', '')}"
        for container, key in list(_walk(doc, path.split("."))):
            value = container[key]
            if isinstance(value, str) and value and not enc.is_encrypted(value):
                container[key] = await enc.encrypt(value, field, owner)


async def reveal_paths(enc: FieldEncryption | None, doc: dict[str, Any], paths: Iterable[str], context: str,
                       *, reveal: bool) -> None:
    """In place: decrypt values at `paths` when `reveal`, else replace ciphertext with `MASK`."""
    for path in paths:
        field = f"{context}.{path.replace('[]', '')}"
        for container, key in list(_walk(doc, path.split("."))):
            value = container[key]
            if not FieldEncryption.is_encrypted(value):
                continue
            container[key] = await enc.decrypt(value, field) if (reveal and enc is not None) else MASK


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
