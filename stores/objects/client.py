"""S3 adapter (aioboto3) for any S3 server: buckets, objects, presigned URLs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from stores.errors import NotFound, StoreConfigError, StoreUnavailable

PRESIGN_TTL_S = 15 * 60

BUCKETS = ("kredete-documents", "kredete-ml-artifacts", "kredete-backups", "kredete-logs-archive",
           "kredete-static-assets")


class ObjectStore:
    """S3 client factory; each operation opens a pooled client from one aioboto3 session."""

    def __init__(self, url: str | None, access_key: str, secret_key: str, *, region: str = "us-east-1",
                 timeout: float = 5.0) -> None:
        self._url = url
        self._session = aioboto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                         region_name=region)
        self._config = Config(connect_timeout=timeout, read_timeout=max(timeout * 4, 20),
                              retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"},
                              signature_version="s3v4")
        self._sync = boto3.client("s3", endpoint_url=url, aws_access_key_id=access_key,
                                  aws_secret_access_key=secret_key, region_name=region, config=self._config)

    async def connect(self) -> ObjectStore:
        await self.health()
        return self

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        try:
            async with self._session.client("s3", endpoint_url=self._url, config=self._config) as s3:
                yield s3
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
                raise NotFound(f"S3 object or bucket not found ({code})", store="s3") from exc
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                raise StoreConfigError(f"S3 refused the request ({code})", store="s3") from exc
            raise
        except (EndpointConnectionError, BotoCoreError) as exc:
            raise StoreUnavailable(f"S3 at {self._url} is unreachable ({type(exc).__name__})", store="s3") from exc

    async def ensure_bucket(self, bucket: str, *, versioning: bool = True, object_lock: bool = False) -> None:
        async with self.client() as s3:
            try:
                await s3.head_bucket(Bucket=bucket)
            except ClientError:
                await s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)
            if versioning and not object_lock:
                await s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    async def put(self, bucket: str, key: str, body: bytes, *, content_type: str = "application/octet-stream",
                  metadata: dict[str, str] | None = None) -> str | None:
        """Store an object; returns its version id when the bucket is versioned."""
        async with self.client() as s3:
            res = await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                                      Metadata=metadata or {})
        return res.get("VersionId")

    async def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        kw = {"VersionId": version_id} if version_id else {}
        async with self.client() as s3:
            res = await s3.get_object(Bucket=bucket, Key=key, **kw)
            return await res["Body"].read()

    def presigned_get(self, bucket: str, key: str, ttl_s: int = PRESIGN_TTL_S) -> str:
        """A GET URL valid for `ttl_s` seconds (15 minutes by default, never more than 1 hour)."""
        ttl_s = min(max(1, ttl_s), 3600)
        return self._sync.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                 ExpiresIn=ttl_s)

    async def health(self) -> dict[str, object]:
        async with self.client() as s3:
            res = await s3.list_buckets()
        return {"ok": True, "buckets": len(res.get("Buckets", []))}

    async def close(self) -> None:
        self._sync.close()
