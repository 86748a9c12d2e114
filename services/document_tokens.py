"""Download tokens of sealed documents: a short-lived capability the server signs and later honours.

A token names one object version of one owner (`users/<owner>/<document id>`, its version id, the owner) and the
second it stops working (15 minutes after it was made, as presigned URLs). It is itsdangerous' URL-safe
serializer: compact JSON, base64url, then an HMAC-SHA256 signature under a key derived from the field-encryption
keys (`FieldCipher.link_signing_key`) and salted for this one purpose. The payload is signed, not encrypted: it
holds only what the link's holder already knows (the object key, which names the owner's id, and the version),
never a document's content. Pure: no I/O, the clock passed in by tests.
"""

from __future__ import annotations

import hashlib
import time
from typing import Literal
from uuid import UUID

from itsdangerous import BadData, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Salt of the signer: a signature made for another purpose under the same key never verifies here.
SALT = "kredete.document-download.v1"
#: Longer strings are refused before anything is decoded (a real token is about 300 characters).
MAX_TOKEN_CHARS = 2048

RefusalCode = Literal["invalid", "expired"]


class LinkRefused(Exception):
    """A token that does not grant anything: forged, altered, malformed (`invalid`) or too old (`expired`)."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DocumentGrant(BaseModel):
    """What a valid token grants: reading `key` at `version_id`, a document of `user_id`, until `expires_at`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    key: str = Field(alias="k", min_length=8, max_length=300)
    version_id: str | None = Field(None, alias="v", max_length=200)
    user_id: UUID = Field(alias="u")
    #: Unix seconds
    expires_at: int = Field(alias="e", ge=0)
    #: Request id of the tool call that made the link (its audit row); no meaning to the route.
    link_id: str = Field("", alias="l", max_length=64)

    @model_validator(mode="after")
    def _owner_prefix(self) -> DocumentGrant:
        if not self.key.startswith(f"users/{self.user_id}/"):
            raise ValueError("a document key lies under its owner's prefix")
        return self


class DownloadTokens:
    """Makes and verifies download tokens under one key (32 bytes or more)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a download-token key has at least 32 bytes")
        self._serializer = URLSafeSerializer(key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256,
                                                                              "key_derivation": "hmac"})

    def issue(self, *, key: str, version_id: str | None, user_id: UUID, ttl_s: int, link_id: str = "",
              now: float | None = None) -> tuple[str, DocumentGrant]:
        """(token, grant) of one object version of `user_id`, valid `ttl_s` seconds from `now`."""
        moment = time.time() if now is None else now
        grant = DocumentGrant(key=key, version_id=version_id, user_id=user_id,
                              expires_at=int(moment) + max(1, ttl_s), link_id=link_id[:64])
        return self._serializer.dumps(grant.model_dump(mode="json", by_alias=True, exclude_defaults=True)), grant

    def verify(self, token: str, *, now: float | None = None) -> DocumentGrant:
        """The grant of a token signed here and not yet expired; LinkRefused otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise LinkRefused("invalid", "invalid download link")
        try:
            # The signature is checked before the payload is decoded (or decompressed).
            grant = DocumentGrant.model_validate(self._serializer.loads(token))
        except (BadData, ValidationError, TypeError, ValueError):
            raise LinkRefused("invalid", "invalid download link") from None
        if grant.expires_at <= (time.time() if now is None else now):
            raise LinkRefused("expired", "this download link has expired; ask for a new one")
        return grant
