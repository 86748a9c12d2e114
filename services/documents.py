"""DocumentService: customers' documents in S3, handed out as short-lived download links.

The agent path never holds S3 credentials: a tool asks this service for a link and gets a URL valid
15 minutes for one object version. The service acts as the `documents` principal (its own MinIO user / IAM role)
and only ever links keys under `users/<user id>/` of the user it is asked for; the caller (the MCP tool)
takes that user id from the verified token, never from the model. A document id is the path under that
prefix (`kyc/kyc-summary.txt`); anything else, a missing object, or an object whose `user-id` metadata names
someone else is `DocumentNotFound` (another user's document is indistinguishable from none).

Documents are sealed under their owner's data key (`stores.objects.sealed`), so a presigned S3 URL would hand
out ciphertext. A sealed document's link names the MCP HTTP server's download route instead
(`<public base URL>/documents/download?t=<token>`, `services.document_tokens`): the server verifies the token,
reads that version as this principal, opens it with the owner's key and serves the plaintext (`download`);
once the owner is erased it answers `DocumentErased`. Only an unsealed (legacy) object still gets a presigned
URL, recorded in the S3 access log (principal `kredete-documents`, presigned) when used. A process with no
download route (stdio, `KREDETE_PUBLIC_BASE_URL` unset) refuses to link a sealed document
(`DownloadRouteMissing`) rather than hand out a blob the customer cannot open.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta
from functools import cached_property
from urllib.parse import quote
from uuid import UUID

from pydantic import BaseModel

from config.settings import Settings
from services.document_tokens import DocumentGrant, DownloadTokens, LinkRefused
from stores.crypto import FieldCipher
from stores.errors import InvalidData, NotFound, StoreUnavailable
from stores.keys import KeyDestroyed
from stores.objects.buckets import documents_bucket
from stores.objects.client import PRESIGN_TTL_S, ObjectStore
from stores.objects.sealed import SEALED_META, SEALED_SCHEME, is_sealed, open_sealed, plain_size

#: `<kind>/<file>`: one folder level under the user's prefix, no dots-only or hidden segments
DOCUMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}/[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
#: Path of the download route on the MCP HTTP server (server.py).
DOWNLOAD_PATH = "/documents/download"
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+(; ?[a-z0-9_-]+=[A-Za-z0-9_.-]+)?$")

__all__ = ["DOCUMENT_ID", "DOWNLOAD_PATH", "DocumentErased", "DocumentLink", "DocumentNotFound", "DocumentService",
           "DownloadRouteMissing", "LinkRefused", "OpenedDocument"]


class DocumentNotFound(NotFound):
    """No such document for this user (or not theirs: the two are not told apart)."""

    store = "s3"


class DocumentErased(NotFound):
    """The document's owner was erased: its data key is destroyed and no copy of it opens any more."""

    store = "s3"


class DownloadRouteMissing(StoreUnavailable):
    """A sealed document asked for in a process that has no download route to name."""

    store = "s3"
    public_message = ("this document is encrypted under the customer's own key and is downloaded through the MCP "
                      "HTTP server; this server has no download address (stdio without KREDETE_PUBLIC_BASE_URL)")


class DocumentLink(BaseModel):
    document_id: str
    url: str
    expires_at: datetime
    content_type: str
    size_bytes: int
    title: str = ""
    #: True: the URL is the MCP server's download route (the document is opened there); False: presigned S3.
    sealed: bool = False


class OpenedDocument(BaseModel):
    """The plaintext of one document version, as the download route serves it."""

    grant: DocumentGrant
    body: bytes
    content_type: str
    filename: str


def download_url(base: str) -> str:
    return base.rstrip("/") + DOWNLOAD_PATH


class DocumentService:
    def __init__(self, objects: ObjectStore, bucket: str, *, ttl_s: int = PRESIGN_TTL_S,
                 settings: Settings | None = None, cipher: FieldCipher | None = None,
                 public_base_url: str | None = None) -> None:
        """`cipher` (or one made from `settings` when first needed) opens sealed documents and derives the link
        key; `public_base_url`: where customers reach the MCP HTTP server (None: no download route here)."""
        self.objects = objects
        self.bucket = bucket
        self.ttl_s = ttl_s
        self._settings = settings
        self._cipher = cipher
        self.public_base_url = public_base_url

    @classmethod
    def from_settings(cls, settings: Settings, *, cipher: FieldCipher | None = None,
                      public_base_url: str | None = None) -> DocumentService:
        from stores.objects.principals import objects_for

        return cls(objects_for(settings, "documents"), documents_bucket(settings.s3_bucket_prefix), settings=settings,
                   cipher=cipher, public_base_url=public_base_url or settings.public_base_url)

    @cached_property
    def cipher(self) -> FieldCipher:
        if self._cipher is None:
            if self._settings is None:
                raise InvalidData("no field-encryption keys to open sealed documents with", store="crypto")
            self._cipher = FieldCipher.from_settings(self._settings)
        return self._cipher

    @cached_property
    def tokens(self) -> DownloadTokens:
        return DownloadTokens(self.cipher.link_signing_key())

    @staticmethod
    def key_of(user_id: UUID, document_id: str) -> str:
        if not DOCUMENT_ID.fullmatch(document_id) or ".." in document_id:
            raise DocumentNotFound("no such document", store="s3")
        return f"users/{user_id}/{document_id}"

    async def list_documents(self, user_id: UUID, *, limit: int = 100) -> list[str]:
        """The user's document ids, in key order."""
        prefix = f"users/{user_id}/"
        return [k[len(prefix):] for k in await self.objects.list_keys(self.bucket, prefix, limit=limit)]

    async def link(self, user_id: UUID, document_id: str, *, link_id: str = "") -> DocumentLink:
        """A 15-minute download link to one of `user_id`'s documents: the download route with a signed token
        for a sealed document (its current version), a presigned GET URL for an unsealed one. `link_id` (the
        tool call's request id) goes into the token, so the route's audit rows point at the call that linked."""
        key = self.key_of(user_id, document_id)
        try:
            head = await self.objects.head(self.bucket, key)
        except NotFound as exc:
            raise DocumentNotFound("no such document", store="s3") from exc
        meta = head.get("Metadata") or {}
        if meta.get("user-id", str(user_id)) != str(user_id):
            raise DocumentNotFound("no such document", store="s3")
        size = int(head.get("ContentLength") or 0)
        if meta.get(SEALED_META) == SEALED_SCHEME:
            if not self.public_base_url:
                raise DownloadRouteMissing("no public base URL for the download route", store="s3")
            version = head.get("VersionId")
            token, grant = self.tokens.issue(key=key, version_id=None if version in (None, "null") else version,
                                             user_id=user_id, ttl_s=self.ttl_s, link_id=link_id)
            return DocumentLink(document_id=document_id, url=f"{download_url(self.public_base_url)}?t={quote(token)}",
                                expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
                                content_type=_media_type(meta.get("plain-type")), size_bytes=plain_size(size),
                                title=meta.get("title", ""), sealed=True)
        signed_at = datetime.now(UTC)
        url = self.objects.presigned_get(self.bucket, key, self.ttl_s)
        return DocumentLink(document_id=document_id, url=url, expires_at=signed_at + timedelta(seconds=self.ttl_s),
                            content_type=head.get("ContentType") or "application/octet-stream",
                            size_bytes=size, title=meta.get("title", ""))

    def verify(self, token: str) -> DocumentGrant:
        """The grant of a download token; LinkRefused when it is forged, altered or expired."""
        return self.tokens.verify(token)

    async def download(self, grant: DocumentGrant) -> OpenedDocument:
        """The plaintext of the document version a verified grant names.

        DocumentNotFound: no such version, or its owner metadata is not the grant's user; DocumentErased: the
        owner's key is destroyed; InvalidData: the body does not open or fails its content-sha256.
        """
        try:
            body, meta, stored_type = await self.objects.get_with_metadata(self.bucket, grant.key,
                                                                           version_id=grant.version_id)
        except (NotFound, InvalidData) as exc:  # InvalidData: S3 rejected the version id
            raise DocumentNotFound("no such document", store="s3") from exc
        if meta.get("user-id") != str(grant.user_id):
            raise DocumentNotFound("no such document", store="s3")
        filename = grant.key.rsplit("/", 1)[-1]
        if not is_sealed(body, meta):  # a legacy plaintext object (a link is only made for sealed ones)
            return OpenedDocument(grant=grant, body=body, filename=filename,
                                  content_type=_media_type(stored_type))
        # The key store decides, not this process's short key cache: a download right after the owner's
        # erasure (in another process) must already be refused.
        self.cipher.forget([grant.user_id])
        try:
            # The key store is a blocking client (SQLite or OpenBao's HTTP API): off the event loop.
            plain = await asyncio.to_thread(open_sealed, self.cipher, grant.key, body, meta)
        except KeyDestroyed as exc:
            raise DocumentErased("document erased", store="s3") from exc
        expected = meta.get("content-sha256")
        if expected and hashlib.sha256(plain).hexdigest() != expected:
            raise InvalidData("the document does not match its content-sha256", store="s3")
        return OpenedDocument(grant=grant, body=plain, filename=filename,
                              content_type=_media_type(meta.get("plain-type")))

    async def close(self) -> None:
        await self.objects.close()


def _media_type(value: str | None) -> str:
    """A stored content type when it is a plain media type, else application/octet-stream (never echoed raw)."""
    v = (value or "").strip().lower()
    return v if _MEDIA_TYPE.fullmatch(v) else "application/octet-stream"
