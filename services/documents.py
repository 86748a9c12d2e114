"""DocumentService: customers' documents in S3, handed out as short-lived presigned links.

The agent path never holds S3 credentials: a tool asks this service for a link and gets a URL valid
15 minutes for one object. The service acts as the `documents` principal (its own MinIO user / IAM role)
and only ever signs keys under `users/<user id>/` of the user it is asked for; the caller (the MCP tool)
takes that user id from the verified token, never from the model. A document id is the path under that
prefix (`kyc/kyc-summary.txt`); anything else, a missing object, or an object whose `user-id` metadata names
someone else is `DocumentNotFound` (another user's document is indistinguishable from none).

Every download through a link is recorded in the S3 access log (principal `kredete-documents`, presigned).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from pydantic import BaseModel

from config.settings import Settings
from stores.errors import NotFound
from stores.objects.buckets import documents_bucket
from stores.objects.client import PRESIGN_TTL_S, ObjectStore

#: `<kind>/<file>`: one folder level under the user's prefix, no dots-only or hidden segments
DOCUMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}/[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class DocumentNotFound(NotFound):
    """No such document for this user (or not theirs: the two are not told apart)."""

    store = "s3"


class DocumentLink(BaseModel):
    document_id: str
    url: str
    expires_at: datetime
    content_type: str
    size_bytes: int
    title: str = ""


class DocumentService:
    def __init__(self, objects: ObjectStore, bucket: str, *, ttl_s: int = PRESIGN_TTL_S) -> None:
        self.objects = objects
        self.bucket = bucket
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentService:
        from stores.objects.principals import objects_for

        return cls(objects_for(settings, "documents"), documents_bucket(settings.s3_bucket_prefix))

    @staticmethod
    def key_of(user_id: UUID, document_id: str) -> str:
        if not DOCUMENT_ID.fullmatch(document_id) or ".." in document_id:
            raise DocumentNotFound("no such document", store="s3")
        return f"users/{user_id}/{document_id}"

    async def list_documents(self, user_id: UUID, *, limit: int = 100) -> list[str]:
        """The user's document ids, in key order."""
        prefix = f"users/{user_id}/"
        return [k[len(prefix):] for k in await self.objects.list_keys(self.bucket, prefix, limit=limit)]

    async def link(self, user_id: UUID, document_id: str) -> DocumentLink:
        """A presigned GET URL (15 minutes) to one of `user_id`'s documents."""
        key = self.key_of(user_id, document_id)
        try:
            head = await self.objects.head(self.bucket, key)
        except NotFound as exc:
            raise DocumentNotFound("no such document", store="s3") from exc
        meta = head.get("Metadata") or {}
        if meta.get("user-id", str(user_id)) != str(user_id):
            raise DocumentNotFound("no such document", store="s3")
        signed_at = datetime.now(UTC)
        url = self.objects.presigned_get(self.bucket, key, self.ttl_s)
        return DocumentLink(document_id=document_id, url=url, expires_at=signed_at + timedelta(seconds=self.ttl_s),
                            content_type=head.get("ContentType") or "application/octet-stream",
                            size_bytes=int(head.get("ContentLength") or 0), title=meta.get("title", ""))

    async def close(self) -> None:
        await self.objects.close()
