"""Client-side field-level encryption of PII (SSN/BVN/NIN in bureau data, account numbers).

Preferred: pymongo explicit encryption (libmongocrypt via `pymongocrypt`) with a local KMS master key
derived from `field_encryption_master_key`; data keys live in the `__keyvault` collection of the
database. Explicit encryption needs nothing from the server but a key-vault collection, so it works
against FerretDB too. Fallback when `pymongocrypt` is missing: envelope encryption (`stores.crypto`).
Ciphertext of either kind is decrypted by either backend. Plaintext leaves only through `reveal_paths`
with `reveal=True`, which the repositories pass only for a valid `RevealGrant` (`stores.mongo.reveal`).
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
from motor.motor_asyncio import AsyncIOMotorDatabase

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

    def __init__(self, master_key: str | bytes) -> None:
        self._envelope = FieldCipher(master_key)

    @abstractmethod
    async def encrypt(self, value: str, field: str) -> Any: ...

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

    async def encrypt(self, value: str, field: str) -> str:
        return self._envelope.encrypt(value, field)


class ExplicitFieldEncryption(FieldEncryption):
    """pymongo explicit encryption (AEAD_AES_256_CBC_HMAC_SHA_512-Random) with a local KMS key."""

    kind = "mongo-explicit"

    def __init__(self, master_key: str | bytes, db: AsyncIOMotorDatabase) -> None:
        super().__init__(master_key)
        from motor.motor_asyncio import AsyncIOMotorClientEncryption

        raw = master_key.encode() if isinstance(master_key, str) else master_key
        local_key = HKDF(algorithm=hashes.SHA256(), length=96, salt=b"kredete", info=b"mongo-local-kms").derive(raw)
        self._ce = AsyncIOMotorClientEncryption({"local": {"key": local_key}}, f"{db.name}.{KEY_VAULT}",
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

    async def encrypt(self, value: str, field: str) -> Binary:
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


async def ensure_key_vault(db: AsyncIOMotorDatabase) -> None:
    """Unique index on key alt names (plain unique: FerretDB 1.x has no partial indexes)."""
    await db[KEY_VAULT].create_index("keyAltNames", unique=True, name="uniq_key_alt_names")


async def open_field_encryption(db: AsyncIOMotorDatabase, master_key: str | bytes, *,
                                mode: str = "auto") -> FieldEncryption:
    """`auto`: explicit encryption when `pymongocrypt` is importable, else envelope; or force one."""
    if mode not in ("auto", "explicit", "envelope"):
        raise ValueError(mode)
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
    """Encrypt, in place, the string values at `paths` (already encrypted values are left alone)."""
    for path in paths:
        field = f"{context}.{path.replace('[]', '')}"
        for container, key in list(_walk(doc, path.split("."))):
            value = container[key]
            if isinstance(value, str) and value and not enc.is_encrypted(value):
                container[key] = await enc.encrypt(value, field)


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
