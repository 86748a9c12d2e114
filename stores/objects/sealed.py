"""Customer documents sealed under their owner's data key (client-side envelope), inside SSE-KMS.

Why client-side and not SSE-C: the documents bucket is object-locked (COMPLIANCE, 7 years), versioned,
replicated to the DR region and tiered to a cold server. None of those copies can be deleted early, so the only
way to erase a customer's document is to make every copy unreadable at once: the body is AES-256-GCM under the
customer's own data key (`stores.crypto.UserCipher`, key in `stores.keys`) before it leaves the process, and
destroying that key shreds the object, its old versions, the DR replica and the tiered copy together. SSE-C
would need the customer key on every request (presigned links cannot carry it), is refused by the bucket
policies that demand `aws:kms`, and MinIO does not replicate it; the server-side SSE-KMS layer stays on top
unchanged (policies, replication and tiering work as before).

A sealed object is `KRDENC2\\n` + nonce + ciphertext, bound to its object key (a copy under another key does not
open), with metadata `sealed: enc2` and the plaintext's `plain-type` and `content-sha256`. A presigned link to
a sealed object would hand out ciphertext, so none is made: `get_document_link` names the MCP HTTP server's
download route instead, which opens the document in the process with the owner's key (`services.documents`),
and export archives (`kredete dsr export`) carry the plaintext.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from stores.crypto import SEALED_MAGIC, FieldCipher, UserCipher
from stores.errors import InvalidData

SEALED_META = "sealed"
SEALED_SCHEME = "enc2"
SEALED_CONTENT_TYPE = "application/octet-stream"


def context_of(key: str) -> str:
    """Associated data of a sealed document: its object key (not the bucket, which differs per region/prefix)."""
    return f"s3.object|{key}"


def seal(user: UserCipher, key: str, body: bytes, *, content_type: str,
         metadata: Mapping[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    """(sealed body, object metadata) of a document owned by `user` stored at `key`."""
    meta = {**(metadata or {}), SEALED_META: SEALED_SCHEME, "plain-type": content_type,
            "user-id": user.user_id}
    meta.setdefault("content-sha256", hashlib.sha256(body).hexdigest())
    return user.seal(body, context_of(key)), meta


def is_sealed(body: bytes, metadata: Mapping[str, str] | None = None) -> bool:
    return body.startswith(SEALED_MAGIC) or (metadata or {}).get(SEALED_META) == SEALED_SCHEME


def plain_size(sealed_size: int) -> int:
    """Bytes of the plaintext of a sealed body of `sealed_size` bytes (magic, 12-byte nonce, 16-byte tag)."""
    return max(0, sealed_size - len(SEALED_MAGIC) - 12 - 16)


def open_sealed(cipher: FieldCipher, key: str, body: bytes, metadata: Mapping[str, str]) -> bytes:
    """The plaintext of a sealed document (its owner from the metadata); KeyDestroyed when they were erased."""
    owner = (metadata or {}).get("user-id")
    if not owner:
        raise InvalidData("sealed document without an owner", store="s3")
    return cipher.user(owner).open(body, context_of(key))
