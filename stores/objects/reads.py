"""Listing a bucket and reading objects with their metadata (what an ingestion of documents needs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from stores.objects.client import ObjectStore, S3NotFound


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class StoredObject:
    """An object's body with its content type, user metadata and version."""

    key: str
    body: bytes
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None


async def list_objects(store: ObjectStore, bucket: str, *, prefix: str = "", after: str | None = None,
                       page_size: int = 200) -> AsyncIterator[ObjectInfo]:
    """Objects under `prefix` with keys after `after`, in key order; none when the bucket does not exist."""
    token: dict[str, str] = {"StartAfter": after} if after else {}
    while True:
        try:
            async with store.client() as s3:
                page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=page_size, **token)
        except S3NotFound:  # listing finds nothing only when the bucket is missing
            return
        for obj in page.get("Contents", []):
            yield ObjectInfo(key=obj["Key"], size=int(obj.get("Size", 0)), etag=str(obj.get("ETag", "")),
                             last_modified=obj["LastModified"])
        if not page.get("IsTruncated"):
            return
        token = {"ContinuationToken": page["NextContinuationToken"]}


async def read_object(store: ObjectStore, bucket: str, key: str) -> StoredObject:
    """The current version of an object; S3NotFound when it is gone."""
    async with store.client() as s3:
        res = await s3.get_object(Bucket=bucket, Key=key)
        body = await res["Body"].read()
    return StoredObject(key=key, body=body, content_type=(res.get("ContentType") or "").split(";")[0],
                        metadata=dict(res.get("Metadata") or {}), version_id=res.get("VersionId"))
