"""S3 access log: MinIO audit entries as records, archived in batches in the logs-archive bucket, read back.

One record per S3 API call: who (access key, and the parent user of a service account), what (API, bucket,
key, version), when, from where (client address, user agent), the result (HTTP status and S3 error code),
and whether it came through a presigned URL. Headers, query strings and signatures are not kept (a
presigned URL's signature is a bearer credential until it expires).

Layout: `s3-access/<bucket>/<YYYY>/<MM>/<DD>/<HH>/<first record time>-<random>.ndjson.gz`, one object per
received batch and bucket (calls on no bucket, such as ListBuckets, under `s3-access/_service/`). The key
starts with the time of the batch's earliest record, so a time range is read by listing from the hour
before it. The logs-archive lifecycle rule deletes them after 365 days.
"""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from stores.objects.client import ObjectStore

ROOT = "s3-access"
NO_BUCKET = "_service"
#: Batches are keyed by their first record's time; MinIO flushes a batch every second (also when it replays
#: its queue: the batches were cut when the calls happened), so a batch spans seconds: 5 minutes of slack.
_SLACK = timedelta(minutes=5)


class AccessRecord(BaseModel):
    time: datetime
    #: which server took the call (`MINIO_SITE_NAME`: primary / dr)
    site: str = ""
    principal: str = ""
    #: the user a service account or STS session belongs to (empty for plain users)
    parent: str = ""
    api: str
    bucket: str = ""
    key: str = ""
    version_id: str = ""
    status_code: int = 0
    #: S3 error code (AccessDenied, NoSuchKey, ...) or "OK"
    result: str = ""
    remote_ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    presigned: bool = False
    bytes_in: int = 0
    bytes_out: int = 0


def from_audit(entry: dict[str, Any]) -> AccessRecord | None:
    """The record of one MinIO audit entry; None for entries that are not S3 API calls (admin, internal)."""
    api = entry.get("api") or {}
    name = api.get("name") or ""
    if not name or entry.get("trigger") == "internal" or entry.get("type") in ("admin", "sts", "internal"):
        return None
    query = entry.get("requestQuery") or {}
    resp = {k.lower(): v for k, v in (entry.get("responseHeader") or {}).items()}
    status_code = int(api.get("statusCode") or 0)
    return AccessRecord(
        time=_parse_time(entry.get("time")), site=entry.get("siteName") or "",
        principal=entry.get("accessKey") or "", parent=entry.get("parentUser") or "", api=name,
        bucket=api.get("bucket") or "", key=api.get("object") or "",
        version_id=query.get("versionId") or resp.get("x-amz-version-id") or "",
        status_code=status_code, result=_result(status_code, api.get("status") or "", entry.get("error") or ""),
        remote_ip=entry.get("remotehost") or "", user_agent=(entry.get("userAgent") or "")[:200],
        request_id=entry.get("requestID") or "",
        presigned="X-Amz-Signature" in query or "Signature" in query,
        bytes_in=max(0, int(api.get("rx") or 0)), bytes_out=max(0, int(api.get("tx") or 0)))


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return datetime.now(UTC)


def _result(status_code: int, status: str, error: str) -> str:
    """"OK", or the failure in a few words: MinIO's error text when it gave one, else the HTTP reason."""
    if 200 <= status_code < 400:
        return "OK"
    return (error.strip() or status or f"HTTP {status_code}")[:120]


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """A webhook body: newline-delimited JSON entries (MinIO's batches) or one JSON array or object."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return []
    if text.startswith("["):
        return [e for e in json.loads(text) if isinstance(e, dict)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def archive_key(bucket: str, first: datetime) -> str:
    t = first.astimezone(UTC)
    return (f"{ROOT}/{bucket or NO_BUCKET}/{t:%Y/%m/%d/%H}/{t:%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(4)}"
            ".ndjson.gz")


def encode(records: Iterable[AccessRecord]) -> bytes:
    lines = "".join(r.model_dump_json() + "\n" for r in records)
    return gzip.compress(lines.encode(), mtime=0)


class AccessLogArchive:
    """The archive in the logs-archive bucket: the shipper writes batches, the auditor reads them."""

    def __init__(self, objects: ObjectStore, bucket: str) -> None:
        self.objects = objects
        self.bucket = bucket

    async def write(self, records: list[AccessRecord]) -> list[str]:
        """One object per source bucket of the batch; returns their keys. Raises the store's error (the
        receiver then answers 503 and MinIO keeps the batch queued)."""
        by_bucket: dict[str, list[AccessRecord]] = {}
        for r in records:
            by_bucket.setdefault(r.bucket, []).append(r)
        keys = []
        for bucket, group in sorted(by_bucket.items()):
            group.sort(key=lambda r: r.time)
            key = archive_key(bucket, group[0].time)
            await self.objects.put(self.bucket, key, encode(group), content_type="application/x-ndjson",
                                   metadata={"records": str(len(group))})
            keys.append(key)
        return keys

    async def read(self, bucket: str, since: datetime, until: datetime | None = None, *, key: str | None = None,
                   limit: int = 10_000) -> list[AccessRecord]:
        """Records of calls on `bucket` (`""`: calls on no bucket) from `since` (to `until`), optionally for one
        object key, oldest first."""
        since = since.astimezone(UTC)
        until = until.astimezone(UTC) if until else None
        prefix = f"{ROOT}/{bucket or NO_BUCKET}/"
        start = since - _SLACK
        keys = await self.objects.list_keys(self.bucket, prefix, start_after=f"{prefix}{start:%Y/%m/%d/%H}/",
                                            limit=100_000)
        first, last = f"{start:%Y%m%dT%H%M%S.%fZ}", f"{until:%Y%m%dT%H%M%S.%fZ}" if until else None
        out: list[AccessRecord] = []
        for k in keys:
            stamp = k[len(prefix) + 14:]  # after "YYYY/MM/DD/HH/"
            if stamp < first:
                continue
            if last and stamp > last:
                break
            for line in gzip.decompress(await self.objects.get(self.bucket, k)).decode().splitlines():
                r = AccessRecord.model_validate_json(line)
                if r.time >= since and (until is None or r.time <= until) and (key is None or r.key == key):
                    out.append(r)
        out.sort(key=lambda r: r.time)
        return out[:limit]
