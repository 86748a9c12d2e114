"""S3 adapter (aioboto3) for any S3 server: buckets, objects, presigned URLs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from stores.errors import Conflict, InvalidData, NotFound, StoreConfigError, StoreError, StoreUnavailable, redact_url

PRESIGN_TTL_S = 15 * 60

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
    """S3 client factory; each operation opens a pooled client from one aioboto3 session."""

    def __init__(self, url: str | None, access_key: str, secret_key: str, *, region: str = "us-east-1",
                 timeout: float = 5.0) -> None:
        self._url = url
        self._session = aioboto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                         region_name=region)
        # Reads may take longer than connecting (large objects); both stay bounded by `timeout`.
        self._config = Config(connect_timeout=timeout, read_timeout=timeout * 4,
                              retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"},
                              signature_version="s3v4")
        # connect()/health(): one attempt, answered within `timeout` (a silent endpoint fails fast).
        self._probe_config = self._config.merge(Config(read_timeout=timeout,
                                                       retries={"max_attempts": 1, "mode": "standard"}))
        self._sync = boto3.client("s3", endpoint_url=url, aws_access_key_id=access_key,
                                  aws_secret_access_key=secret_key, region_name=region, config=self._config)

    async def connect(self) -> ObjectStore:
        await self.health()
        return self

    @contextlib.asynccontextmanager
    async def client(self, *, config: Config | None = None) -> AsyncIterator[Any]:
        """A pooled client; S3 errors raised inside the block come out as typed store errors."""
        try:
            async with self._session.client("s3", endpoint_url=self._url, config=config or self._config) as s3:
                yield s3
        except ClientError as exc:
            raise _typed(exc) from exc
        except (EndpointConnectionError, BotoCoreError) as exc:
            if isinstance(exc, NoCredentialsError | PartialCredentialsError):
                raise StoreConfigError(f"no S3 credentials ({type(exc).__name__})", store="s3") from exc
            if isinstance(exc, ParamValidationError):  # checked client-side, before any request
                raise InvalidData("S3 request parameters are invalid", store="s3") from exc
            where = redact_url(self._url) if self._url else "the default endpoint"
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
        async with self.client(config=self._probe_config) as s3:
            res = await s3.list_buckets()
        return {"ok": True, "buckets": len(res.get("Buckets", []))}

    async def close(self) -> None:
        self._sync.close()
