"""S3's part of data-subject requests: a user's document versions (primary and DR), whether any of them can still
be read, deletion receipts under object lock, and export archives.

Documents are never deleted here (COMPLIANCE lock: nobody can before retention ends): an erasure shreds them by
destroying the owner's data key (`stores.objects.sealed`). What this module does is count every version and
replica the key covered, and prove afterwards that none of them opens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stores.crypto import FieldCipher
from stores.errors import InvalidData, NotFound
from stores.objects.buckets import RECORD_DAYS
from stores.objects.client import ObjectStore
from stores.objects.sealed import SEALED_META, SEALED_SCHEME, context_of

RECEIPTS = "dsr/receipts/"


def user_prefix(user_id: str) -> str:
    return f"users/{user_id}/"


@dataclass(frozen=True)
class Version:
    key: str
    version_id: str | None
    size: int
    latest: bool
    delete_marker: bool = False


async def versions(objects: ObjectStore, bucket: str, prefix: str, *, endpoint: str | None = None) -> list[Version]:
    """Every version (and delete marker) under `prefix`, on the primary or `endpoint` (the DR region)."""
    out: list[Version] = []
    kw: dict[str, Any] = {}
    async with objects.client(endpoint=endpoint) as s3:
        while True:
            try:
                page = await s3.list_object_versions(Bucket=bucket, Prefix=prefix, **kw)
            except NotFound:
                return out
            out += [Version(v["Key"], v.get("VersionId"), int(v.get("Size") or 0), bool(v.get("IsLatest")))
                    for v in page.get("Versions", [])]
            out += [Version(m["Key"], m.get("VersionId"), 0, bool(m.get("IsLatest")), True)
                    for m in page.get("DeleteMarkers", [])]
            if not page.get("IsTruncated"):
                return out
            kw = {"KeyMarker": page.get("NextKeyMarker"), "VersionIdMarker": page.get("NextVersionIdMarker")}


async def readable(objects: ObjectStore, bucket: str, found: list[Version], cipher: FieldCipher, *,
                   endpoint: str | None = None) -> dict[str, int]:
    """Of these versions: how many are sealed (and whether their owner's key still opens them), how many are
    plaintext (readable by anyone with the bucket)."""
    out = {"versions": 0, "sealed_unreadable": 0, "sealed_readable": 0, "plaintext": 0}
    async with objects.client(endpoint=endpoint) as s3:
        for v in found:
            if v.delete_marker:
                continue
            out["versions"] += 1
            kw = {"VersionId": v.version_id} if v.version_id and v.version_id != "null" else {}
            res = await s3.get_object(Bucket=bucket, Key=v.key, **kw)
            body, meta = await res["Body"].read(), res.get("Metadata") or {}
            if meta.get(SEALED_META) != SEALED_SCHEME:
                if v.key.endswith(".zip") and body[:2] == b"PK":
                    # export archives are AES-256 zips whose one-time password was never stored
                    out["sealed_unreadable"] += 1
                else:
                    out["plaintext"] += 1
                continue
            try:
                cipher.user(meta.get("user-id", "")).open(body, context_of(v.key))
                out["sealed_readable"] += 1
            except InvalidData:
                out["sealed_unreadable"] += 1
    return out


def receipt_key(request_id: str, at: datetime) -> str:
    return f"{RECEIPTS}{at:%Y/%m}/{request_id}.json"


async def put_record(archiver: ObjectStore, bucket: str, key: str, body: bytes, *,
                     content_type: str = "application/json", days: int = RECORD_DAYS) -> str | None:
    """Put a record (receipt, audit archive) locked in COMPLIANCE mode for `days`; returns its version id."""
    until = datetime.now(UTC) + timedelta(days=days)
    async with archiver.client() as s3:
        res = await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                                  ServerSideEncryption="aws:kms", ObjectLockMode="COMPLIANCE",
                                  ObjectLockRetainUntilDate=until)
    return res.get("VersionId")


async def lock_of(reader: ObjectStore, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
    """The object's lock (mode, retain-until), as the server reports it."""
    head = await reader.head(bucket, key, version_id=version_id)
    return {"mode": head.get("ObjectLockMode"), "retain_until": head.get("ObjectLockRetainUntilDate")}


async def receipts(reader: ObjectStore, bucket: str) -> list[dict[str, Any]]:
    """Every deletion receipt in the logs archive (the erasure list a restore re-applies)."""
    keys = await reader.list_keys(bucket, RECEIPTS, limit=1_000_000)
    out = []
    for k in keys:
        out.append(json.loads(await reader.get(bucket, k)))
    return out
