"""MinIO's admin API (users, policies, remote tiers, replication targets): what `mc admin` calls, from Python.

Requests are SigV4-signed like S3 ones (botocore's signer) and bodies that carry secrets are encrypted with
the caller's secret key the way MinIO's `madmin` does (MinIO's own Python SDK, `minio.crypto`). Only the
operations the data tier configures are here. On AWS the same things are IAM users/roles and policies
(`iam:CreateRole`, `PutRolePolicy`), storage classes (no tier to add) and a replication role.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from minio.crypto import encrypt

from stores.errors import StoreConfigError, StoreError, StoreUnavailable, redact_url

_PREFIX = "/minio/admin/v3"


class AdminError(StoreError):
    """MinIO refused an admin request; the message carries its code and reason (operators read it)."""

    store = "s3"

    def __init__(self, operation: str, status: int, code: str, reason: str) -> None:
        super().__init__(f"{operation}: {code or 'HTTP ' + str(status)}: {reason}".rstrip(": "))
        self.status = status
        self.code = code
        self.reason = reason


class MinioAdmin:
    """Admin client of one MinIO server, as its root user (or a user with `admin:*` rights)."""

    def __init__(self, url: str, access_key: str, secret_key: str, *, region: str = "us-east-1",
                 verify: str | bool | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._secret = secret_key
        self._region = region
        self._signer = SigV4Auth(Credentials(access_key, secret_key), "s3", region)
        ctx: ssl.SSLContext | bool = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else (
            True if verify is None else verify)
        self._http = httpx.AsyncClient(verify=ctx, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, operation: str, method: str, path: str, query: dict[str, str] | None = None,
                    body: bytes = b"", *, secret_body: bool = False) -> bytes:
        if secret_body:
            body = encrypt(body, self._secret)
        url = f"{self.url}{_PREFIX}/{path}" + (f"?{urlencode(sorted((query or {}).items()))}" if query else "")
        request = AWSRequest(method=method, url=url, data=body, headers={
            "X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest(),
            "Content-Type": "application/octet-stream", "Host": urlsplit(url).netloc})
        self._signer.add_auth(request)
        try:
            resp = await self._http.request(method, url, content=body, headers=dict(request.headers.items()))
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"MinIO admin API at {redact_url(self.url)} is unreachable "
                                   f"({type(exc).__name__})", store="s3") from exc
        if resp.status_code in (200, 204):
            return resp.content
        try:
            err = resp.json()
        except ValueError:
            err = {"Message": resp.text[:300]}
        code, reason = str(err.get("Code", "")), str(err.get("Message", "")).strip()
        if resp.status_code in (401, 403) and code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                                      "XMinioAdminRequestAccessDenied"):
            raise StoreConfigError(f"{operation}: MinIO refused the admin credentials ({code})", store="s3")
        if resp.status_code >= 500:
            raise StoreUnavailable(f"{operation}: MinIO answered {resp.status_code} ({code})", store="s3")
        raise AdminError(operation, resp.status_code, code, reason)

    async def authenticates(self, access_key: str, secret_key: str) -> bool:
        """True when the server accepts these credentials: a ListBuckets signed with them is answered, or
        refused with AccessDenied (a valid user without that right) rather than a credential error."""
        url = f"{self.url}/"
        request = AWSRequest(method="GET", url=url, headers={
            "X-Amz-Content-Sha256": hashlib.sha256(b"").hexdigest(), "Host": urlsplit(url).netloc})
        SigV4Auth(Credentials(access_key, secret_key), "s3", self._region).add_auth(request)
        try:
            resp = await self._http.get(url, headers=dict(request.headers.items()))
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"S3 at {redact_url(self.url)} is unreachable ({type(exc).__name__})",
                                   store="s3") from exc
        return resp.status_code == 200 or (resp.status_code == 403 and b"<Code>AccessDenied</Code>" in resp.content)

    # --- users and policies ------------------------------------------------------------------------------
    async def add_user(self, access_key: str, secret_key: str) -> None:
        """Create or update a user (its password is set again: idempotent)."""
        body = json.dumps({"secretKey": secret_key, "status": "enabled"}).encode()
        await self._call(f"add user {access_key}", "PUT", "add-user", {"accessKey": access_key}, body,
                         secret_body=True)

    async def user_info(self, access_key: str) -> dict[str, Any] | None:
        try:
            return json.loads(await self._call(f"user {access_key}", "GET", "user-info", {"accessKey": access_key}))
        except AdminError as exc:
            if exc.code == "XMinioAdminNoSuchUser" or exc.status == 404:
                return None
            raise

    async def add_policy(self, name: str, policy: dict[str, Any]) -> None:
        """Create or replace a canned policy; MinIO validates it (an invalid one raises AdminError)."""
        await self._call(f"policy {name}", "PUT", "add-canned-policy", {"name": name}, json.dumps(policy).encode())

    async def policy(self, name: str) -> dict[str, Any] | None:
        try:
            info = json.loads(await self._call(f"policy {name}", "GET", "info-canned-policy", {"name": name, "v": "2"}))
        except AdminError as exc:
            if exc.code == "XMinioAdminNoSuchPolicy" or exc.status == 404:
                return None
            raise
        return info.get("Policy", info)

    async def set_user_policy(self, access_key: str, policy: str) -> None:
        """Make `policy` (one name, or several separated by commas) the user's policies, replacing the ones
        attached before."""
        await self._call(f"attach {policy} to {access_key}", "PUT", "set-user-or-group-policy",
                         {"policyName": policy, "userOrGroup": access_key, "isGroup": "false"})

    # --- remote tiers (lifecycle transitions) -------------------------------------------------------------
    async def tiers(self) -> list[dict[str, Any]]:
        return json.loads(await self._call("list tiers", "GET", "tier") or b"[]") or []

    async def add_minio_tier(self, name: str, endpoint: str, access_key: str, secret_key: str, bucket: str,
                             prefix: str = "", region: str = "us-east-1") -> None:
        """A remote tier named `name` (the storage class lifecycle rules transition to) on another MinIO."""
        cfg = {"Version": "v1", "Type": "minio", "Name": name,
               "MinIO": {"Endpoint": endpoint, "AccessKey": access_key, "SecretKey": secret_key, "Bucket": bucket,
                         "Prefix": prefix, "Region": region}}
        await self._call(f"add tier {name}", "PUT", "tier", None, json.dumps(cfg).encode(), secret_body=True)

    async def remove_tier(self, name: str) -> None:
        """Remove a remote tier even if objects were transitioned to it (`mc admin tier rm --force`)."""
        await self._call(f"remove tier {name}", "DELETE", f"tier/{name}", {"force": "true"})

    async def verify_tier(self, name: str) -> None:
        """MinIO checks the tier's bucket is reachable with its credentials (AdminError when not)."""
        await self._call(f"verify tier {name}", "GET", f"tier/{name}")

    # --- bucket replication targets ---------------------------------------------------------------------
    async def remote_targets(self, bucket: str) -> list[dict[str, Any]]:
        raw = await self._call(f"remote targets of {bucket}", "GET", "list-remote-targets",
                               {"bucket": bucket, "type": "replication"})
        return json.loads(raw or b"[]") or []

    async def set_replication_target(self, bucket: str, target_url: str, access_key: str, secret_key: str,
                                     target_bucket: str, *, region: str = "us-east-1", rotate: bool = False) -> str:
        """Register the DR bucket as `bucket`'s replication target; returns its ARN (the rule's destination).

        An existing target for the same endpoint and bucket is kept (its ARN returned); `rotate=True` sets its
        credentials again (a key derivation on both sides, ~1 s)."""
        parts = urlsplit(target_url)
        target = {"sourcebucket": bucket, "endpoint": parts.netloc, "targetbucket": target_bucket,
                  "secure": parts.scheme == "https", "type": "replication", "region": region,
                  "credentials": {"accessKey": access_key, "secretKey": secret_key}, "api": "s3v4",
                  "path": "auto", "replicationSync": False, "healthCheckDuration": 5_000_000_000}
        for existing in await self.remote_targets(bucket):
            if existing.get("endpoint") == parts.netloc and existing.get("targetbucket") == target_bucket:
                if not rotate:
                    return existing["arn"]
                target["arn"] = existing["arn"]
                await self._call(f"update replication target of {bucket}", "PUT", "set-remote-target",
                                 {"bucket": bucket, "update": "true", "updateType": "creds"},
                                 json.dumps(target).encode(), secret_body=True)
                return existing["arn"]
        raw = await self._call(f"replication target of {bucket}", "PUT", "set-remote-target", {"bucket": bucket},
                               json.dumps(target).encode(), secret_body=True)
        return json.loads(raw)
