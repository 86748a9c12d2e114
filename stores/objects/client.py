"""S3 adapter (aioboto3) for any S3 server: buckets, objects, presigned URLs, reads that fall over to DR.

Reads (`get`, `head`, `list_keys`, `presigned_get`) go to the DR endpoint when the primary is unreachable or
answers 5xx, and keep going there for `failover_cooldown_s` before the primary is tried again. Writes never
fall over: the DR region is a one-way replica (a write there would never reach the primary), so they fail
with `StoreUnavailable` until the primary is back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aioboto3
import boto3
import botocore.session
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.loaders import create_loader

from stores.errors import Conflict, InvalidData, NotFound, StoreConfigError, StoreError, StoreUnavailable, redact_url

PRESIGN_TTL_S = 15 * 60
logger = logging.getLogger("kredete.objects")
#: One loader of botocore's service models for every ObjectStore of the process: each new botocore session
#: would otherwise parse the S3 model and endpoint files again (~0.3 s per store).
_LOADER = create_loader()


def _botocore_session(cls: type = botocore.session.Session) -> Any:
    session = cls()
    session.register_component("data_loader", _LOADER)
    return session
T = TypeVar("T")

BUCKETS = ("kredete-documents", "kredete-ml-artifacts", "kredete-backups", "kredete-logs-archive",
           "kredete-static-assets")


_NOT_FOUND = frozenset({"404", "NotFound", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NoSuchUpload"})
_REFUSED = frozenset({
    "401", "403", "AccessDenied", "AccountProblem", "AllAccessDisabled", "AuthorizationHeaderMalformed",
    "ExpiredToken", "InvalidAccessKeyId", "InvalidClientTokenId", "InvalidSecurity", "InvalidToken",
    "MissingSecurityHeader", "NotSignedUp", "RequestTimeTooSkewed", "SignatureDoesNotMatch", "TokenRefreshRequired",
    "UnrecognizedClientException",
})
_CONFLICT = frozenset({
    "409", "412", "BucketAlreadyExists", "BucketAlreadyOwnedByYou", "BucketNotEmpty", "ConditionalRequestConflict",
    "InvalidBucketState", "OperationAborted", "PreconditionFailed",
})
_UNAVAILABLE = frozenset({
    "500", "502", "503", "504", "InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown",
    "XMinioServerNotInitialized", "XMinioStorageFull",
})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _S3Error(ClientError):
    """Mixin: a typed store error that is still a botocore ClientError (callers that read
    `.response["Error"]["Code"]` keep working); its message is ours, not the server's."""

    store = "s3"

    def __init__(self, message: str, source: ClientError) -> None:
        Exception.__init__(self, message)
        self.response = source.response
        self.operation_name = source.operation_name
        self.code = error_code(source)

    def __reduce__(self):  # picklable like a plain exception
        return Exception.__new__, (type(self),), self.__dict__ | {"args": self.args}


class S3NotFound(_S3Error, NotFound):
    pass


class S3Refused(_S3Error, StoreConfigError):
    pass


class S3Conflict(_S3Error, Conflict):
    pass


class S3Unavailable(_S3Error, StoreUnavailable):
    pass


class S3Rejected(_S3Error, InvalidData):
    pass


def _typed(exc: ClientError) -> StoreError:
    """The typed store error for an S3 error response (a ClientError too, with the same `.response`).

    Messages carry only the S3 error code and HTTP status: never the endpoint's credentials, a presigned
    URL, or the server's message (which can echo the request).
    """
    code = error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    label = f"{code or 'no code'}, HTTP {status}" if status else (code or "no code")
    if code in _NOT_FOUND or (status == 404 and code not in _REFUSED):
        return S3NotFound(f"S3 object or bucket not found ({label})", exc)
    if code in _REFUSED or status in (401, 403):
        return S3Refused(f"S3 refused the request ({label})", exc)
    if code in _CONFLICT or status in (409, 412):
        return S3Conflict(f"S3 conflict ({label})", exc)
    if code in _UNAVAILABLE or status >= 500 or status in (0, 429):
        return S3Unavailable(f"S3 is unavailable ({label})", exc)
    # any other 4xx: the request itself was wrong (bad argument, bucket name, range, storage class...)
    return S3Rejected(f"S3 rejected the request ({label})", exc)


class ObjectStore:
    """S3 client factory; each operation opens a pooled client from one aioboto3 session.

    `verify`: CA bundle of the endpoints' TLS certificates (None: the system's); `dr_url`: the DR region's
    endpoint, read from while the primary is down (the same credentials must work there).
    """

    def __init__(self, url: str | None, access_key: str | None, secret_key: str | None, *,
                 region: str = "us-east-1", timeout: float = 5.0, verify: str | bool | None = None,
                 dr_url: str | None = None, failover_cooldown_s: float = 10.0) -> None:
        self._url = url
        self._dr_url = dr_url
        self._verify = verify
        self._cooldown = failover_cooldown_s
        #: monotonic time until which reads skip the primary (it failed a read)
        self._primary_down_until = 0.0
        self._session = aioboto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                         region_name=region, botocore_session=_botocore_session(AioSession))
        # Reads may take longer than connecting (large objects); both stay bounded by `timeout`.
        self._config = Config(connect_timeout=timeout, read_timeout=timeout * 4,
                              retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"},
                              signature_version="s3v4")
        # connect()/health(): one attempt, answered within `timeout` (a silent endpoint fails fast).
        self._probe_config = self._config.merge(Config(read_timeout=timeout,
                                                       retries={"max_attempts": 1, "mode": "standard"}))
        signing = boto3.session.Session(botocore_session=_botocore_session())
        self._signers = {u: signing.client("s3", endpoint_url=u, aws_access_key_id=access_key,
                                           aws_secret_access_key=secret_key, region_name=region, config=self._config,
                                           verify=verify)
                         for u in (url, *((dr_url,) if dr_url and dr_url != url else ()))}

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def dr_url(self) -> str | None:
        return self._dr_url

    async def connect(self) -> ObjectStore:
        await self.health()
        return self

    @contextlib.asynccontextmanager
    async def client(self, *, config: Config | None = None, endpoint: str | None = None) -> AsyncIterator[Any]:
        """A pooled client (of the primary unless `endpoint` says otherwise); S3 errors raised inside the
        block come out as typed store errors."""
        url = endpoint or self._url
        try:
            async with self._session.client("s3", endpoint_url=url, config=config or self._config,
                                            verify=self._verify) as s3:
                yield s3
        except ClientError as exc:
            raise _typed(exc) from exc
        except (EndpointConnectionError, BotoCoreError) as exc:
            if isinstance(exc, NoCredentialsError | PartialCredentialsError):
                raise StoreConfigError(f"no S3 credentials ({type(exc).__name__})", store="s3") from exc
            if isinstance(exc, ParamValidationError):  # checked client-side, before any request
                raise InvalidData("S3 request parameters are invalid", store="s3") from exc
            where = redact_url(url) if url else "the default endpoint"
            raise StoreUnavailable(f"S3 at {where} is unreachable ({type(exc).__name__})", store="s3") from exc

    async def ensure_bucket(self, bucket: str, *, versioning: bool = True, object_lock: bool = False) -> None:
        async with self.client() as s3:
            try:
                await s3.head_bucket(Bucket=bucket)
            except ClientError as exc:
                if error_code(exc) not in _NOT_FOUND:
                    raise
                await s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)
            if versioning and not object_lock:
                await s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    async def put(self, bucket: str, key: str, body: bytes, *, content_type: str = "application/octet-stream",
                  metadata: dict[str, str] | None = None, sse: str | None = "aws:kms") -> str | None:
        """Store an object (SSE-KMS unless `sse` says otherwise: the buckets refuse unencrypted puts);
        returns its version id when the bucket is versioned."""
        kw = {"ServerSideEncryption": sse} if sse else {}
        async with self.client() as s3:
            res = await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                                      Metadata=metadata or {}, **kw)
        return res.get("VersionId")

    # --- reads: fall over to the DR endpoint -----------------------------------------------------------
    def read_endpoint(self) -> str | None:
        """Where reads go now: the DR endpoint while the primary is marked down, else the primary."""
        if self._dr_url and time.monotonic() < self._primary_down_until:
            return self._dr_url
        return self._url

    async def _read(self, op: Callable[[Any], Awaitable[T]]) -> T:
        endpoint = self.read_endpoint()
        try:
            async with self.client(endpoint=endpoint) as s3:
                return await op(s3)
        except StoreUnavailable:
            if not self._dr_url or endpoint == self._dr_url:
                raise
            self._primary_down_until = time.monotonic() + self._cooldown
            logger.warning("S3 primary unavailable; reading from the DR endpoint for %.0fs", self._cooldown)
        async with self.client(endpoint=self._dr_url) as s3:
            return await op(s3)

    async def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        kw = {"VersionId": version_id} if version_id else {}

        async def op(s3: Any) -> bytes:
            res = await s3.get_object(Bucket=bucket, Key=key, **kw)
            return await res["Body"].read()

        return await self._read(op)

    async def get_with_metadata(self, bucket: str, key: str, *,
                                version_id: str | None = None) -> tuple[bytes, dict[str, str], str | None]:
        """(body, user metadata, content type) of one object version in one request; NotFound if none."""
        kw = {"VersionId": version_id} if version_id else {}

        async def op(s3: Any) -> tuple[bytes, dict[str, str], str | None]:
            res = await s3.get_object(Bucket=bucket, Key=key, **kw)
            return await res["Body"].read(), dict(res.get("Metadata") or {}), res.get("ContentType")

        return await self._read(op)

    async def head(self, bucket: str, key: str, *, version_id: str | None = None) -> dict[str, Any]:
        """The object's headers (`ContentType`, `Metadata`, `VersionId`, `StorageClass`, ...); NotFound if none."""
        kw = {"VersionId": version_id} if version_id else {}

        async def op(s3: Any) -> dict[str, Any]:
            return await s3.head_object(Bucket=bucket, Key=key, **kw)

        return await self._read(op)

    async def list_keys(self, bucket: str, prefix: str = "", *, start_after: str = "",
                        limit: int = 1000) -> list[str]:
        """Keys under `prefix` in key order, after `start_after`, at most `limit`."""
        async def op(s3: Any) -> list[str]:
            keys: list[str] = []
            kw: dict[str, Any] = {"StartAfter": start_after} if start_after else {}
            while len(keys) < limit:
                page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=min(1000, limit - len(keys)),
                                                **kw)
                keys += [o["Key"] for o in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    break
                kw = {"ContinuationToken": page["NextContinuationToken"]}
            return keys

        return await self._read(op)

    def presigned_get(self, bucket: str, key: str, ttl_s: int = PRESIGN_TTL_S) -> str:
        """A GET URL valid for `ttl_s` seconds (15 minutes by default, never more than 1 hour), signed for the
        endpoint reads go to now (the DR one while the primary is down)."""
        ttl_s = min(max(1, ttl_s), 3600)
        signer = self._signers[self.read_endpoint()]
        return signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s)

    async def health(self) -> dict[str, object]:
        async with self.client(config=self._probe_config) as s3:
            res = await s3.list_buckets()
        return {"ok": True, "buckets": len(res.get("Buckets", []))}

    async def close(self) -> None:
        for signer in self._signers.values():
            signer.close()
