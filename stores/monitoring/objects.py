"""S3 statistics: bytes and objects per bucket, every version counted (versioned buckets keep them all)."""

from __future__ import annotations

from pydantic import BaseModel

from stores.objects.client import ObjectStore


class BucketUsage(BaseModel):
    bucket: str
    bytes: int
    objects: int
    #: Noncurrent versions and delete markers (they cost storage until lifecycle expires them).
    noncurrent: int


class ObjectStats:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def buckets(self, names: set[str] | None = None) -> list[BucketUsage]:
        """Usage of the named buckets that exist (all buckets when None), listing versions page by page."""
        out: list[BucketUsage] = []
        async with self.store.client() as s3:
            names = [b["Name"] for b in (await s3.list_buckets()).get("Buckets", [])
                     if names is None or b["Name"] in names]
            for name in sorted(names):
                size = count = noncurrent = 0
                paginator = s3.get_paginator("list_object_versions")
                async for page in paginator.paginate(Bucket=name):
                    for v in page.get("Versions", []):
                        size += int(v.get("Size", 0))
                        count += 1
                        noncurrent += 0 if v.get("IsLatest") else 1
                    noncurrent += len(page.get("DeleteMarkers", []))
                out.append(BucketUsage(bucket=name, bytes=size, objects=count, noncurrent=noncurrent))
        return out
