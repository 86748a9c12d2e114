"""Who may do what in S3: one principal per service, each with its own user and policy (least privilege).

No service runs as MinIO's root user: the root credentials only run `kredete s3 setup` (creating the users,
policies, tiers and replication), as an AWS account's admin role would. Each principal below is a MinIO user
(locally: `kredete-<name>`, password derived from `.local/secrets.json`) with one canned policy of the same
name; on AWS each is an IAM role with the same policy document, and the process gets it from its instance or
task role (`KREDETE_S3_PRINCIPALS` unset: botocore's default credential chain).

Anything not granted is denied; the explicit Deny statements name the actions the grant must never reach
even if a later edit widens it (deleting a locked backup version, shortening retention).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.settings import S3_PRINCIPALS, Settings
from stores.objects.buckets import bucket_of
from stores.objects.client import ObjectStore

_READ = ["s3:GetObject", "s3:GetObjectVersion"]
_LIST = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"]
_MULTIPART = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:ListBucketMultipartUploads"]
#: What no service principal may do to a bucket's configuration or a locked version.
_NEVER = ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention",
          "s3:PutObjectLegalHold", "s3:PutBucketObjectLockConfiguration", "s3:PutBucketPolicy",
          "s3:DeleteBucketPolicy", "s3:PutLifecycleConfiguration", "s3:PutReplicationConfiguration",
          "s3:PutBucketVersioning", "s3:DeleteBucket"]


def _arn(bucket: str, path: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{path}" if path is not None else "")


def _allow(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _deny(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Deny", "Action": actions, "Resource": resources}


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _guards(buckets: list[str], *, puts: bool) -> list[dict[str, Any]]:
    """The buckets' transport and encryption rules, repeated in the principal's own policy: MinIO evaluates
    bucket policies for anonymous requests only (an authenticated user is judged by its IAM policies), so
    this is what enforces them there; on AWS both apply. `puts`: the SSE-header rules, only for principals
    that write with single puts: a multipart part upload (s3:PutObject too) carries no SSE header, so the
    rule would refuse every multipart upload (pgBackRest, checkpoints); those buckets rely on their default
    SSE-KMS encryption instead."""
    objects = [_arn(b, "*") for b in buckets]
    out = [{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Action": ["s3:*"],
            "Resource": [_arn(b) for b in buckets] + objects,
            "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}}]
    if puts:
        out += [{"Sid": "DenyUnencryptedPuts", "Effect": "Deny", "Action": ["s3:PutObject"], "Resource": objects,
                 "Condition": {"Null": {"s3:x-amz-server-side-encryption": ["true"]}}},
                {"Sid": "DenyOtherEncryption", "Effect": "Deny", "Action": ["s3:PutObject"], "Resource": objects,
                 "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": ["aws:kms"]}}}]
    return out


@dataclass(frozen=True)
class Principal:
    name: str
    purpose: str
    #: servers the user exists on: "primary", "dr" (failover reads, replication), "cold" (the remote tier)
    servers: tuple[str, ...]
    policy_of: Callable[[str], dict[str, Any]]
    #: one line for the principals table (README, report)
    grant: str

    def policy(self, prefix: str = "kredete") -> dict[str, Any]:
        return self.policy_of(prefix)


def _documents(p: str) -> dict[str, Any]:
    b = bucket_of("documents", p)
    return _policy(_allow("ReadWriteDocuments", [*_READ, "s3:PutObject", "s3:GetObjectRetention"], [_arn(b, "*")]),
                   _allow("ListDocuments", _LIST, [_arn(b)]),
                   _deny("NeverDelete", ["s3:DeleteObject", *_NEVER], [_arn(b), _arn(b, "*")]),
                   *_guards([b], puts=True))


def _backup_writer(p: str) -> dict[str, Any]:
    b = bucket_of("backups", p)
    # DeleteObject only adds a delete marker in the versioned, locked bucket (pgBackRest's expire); the
    # versions themselves stay until their COMPLIANCE retention ends, and DeleteObjectVersion is denied.
    return _policy(_allow("WriteBackups", [*_READ, "s3:PutObject", "s3:DeleteObject", *_MULTIPART[:2]],
                          [_arn(b, "*")]),
                   _allow("ListBackups", [*_LIST, "s3:ListBucketMultipartUploads"], [_arn(b)]),
                   _deny("NeverDeleteInsideTheLock", _NEVER, [_arn(b), _arn(b, "*")]), *_guards([b], puts=False))


def _log_shipper(p: str) -> dict[str, Any]:
    b = bucket_of("logs-archive", p)
    # Append only: it cannot read, list or delete; an overwrite would only add a version (versioned bucket).
    return _policy(_allow("AppendLogs", ["s3:PutObject"], [_arn(b, "*")]),
                   _deny("NeverReadOrDelete", ["s3:GetObject", "s3:DeleteObject", *_NEVER], [_arn(b), _arn(b, "*")]),
                   *_guards([b], puts=True))


def _ingestion(p: str) -> dict[str, Any]:
    b = bucket_of("documents", p)
    return _policy(_allow("ReadDocuments", _READ, [_arn(b, "*")]), _allow("ListDocuments", _LIST, [_arn(b)]),
                   *_guards([b], puts=False))


def _ml_pipeline(p: str) -> dict[str, Any]:
    b = bucket_of("ml-artifacts", p)
    return _policy(_allow("ReadWriteArtifacts", [*_READ, "s3:PutObject", "s3:DeleteObject", *_MULTIPART[:2]],
                          [_arn(b, "*")]),
                   _allow("ListArtifacts", [*_LIST, "s3:ListBucketMultipartUploads"], [_arn(b)]),
                   _deny("NeverReconfigure", _NEVER, [_arn(b), _arn(b, "*")]), *_guards([b], puts=False))


def _auditor(p: str) -> dict[str, Any]:
    b = bucket_of("logs-archive", p)
    return _policy(_allow("ReadAccessLogs", ["s3:GetObject"], [_arn(b, "s3-access/*")]),
                   # dsr area: archived audit partitions and deletion receipts are read back to verify them
                   _allow("ReadArchives", ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention"],
                          [_arn(b, "audit/*"), _arn(b, "dsr/*")]),
                   _allow("ListAccessLogs", ["s3:ListBucket", "s3:GetBucketLocation"], [_arn(b)]),
                   *_guards([b], puts=False))


def _archiver(p: str) -> dict[str, Any]:
    """dsr area: archived audit partitions and deletion receipts, each put with its own COMPLIANCE retention
    (years; longer than the bucket's default). Under COMPLIANCE a retention can only be lengthened, so the grant
    to set one cannot shorten or remove a lock; it reads back what it wrote (verification, `dsr reapply`)."""
    b = bucket_of("logs-archive", p)
    records = [_arn(b, "audit/*"), _arn(b, "dsr/*")]
    return _policy(_allow("ArchiveRecords", ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObjectRetention",
                                             *_READ], records),
                   _allow("ListRecords", [*_LIST, "s3:GetBucketObjectLockConfiguration"], [_arn(b)]),
                   _deny("NeverDeleteOrReconfigure", ["s3:DeleteObject", *[a for a in _NEVER
                                                                           if a != "s3:PutObjectRetention"]],
                         [_arn(b), _arn(b, "*")]),
                   _deny("OnlyItsRecords", ["s3:PutObject", "s3:PutObjectRetention"], [_arn(b, "s3-access/*")]),
                   *_guards([b], puts=True))


REPLICATED = ("documents", "ml-artifacts", "backups")


def _replicator(p: str) -> dict[str, Any]:
    """On the DR server: what MinIO's replication worker of the primary does there (MinIO's documented set)."""
    buckets = [bucket_of(k, p) for k in REPLICATED]
    return _policy(
        _allow("ReplicationTargetBuckets", [
            "s3:GetReplicationConfiguration", "s3:ListBucket", "s3:ListBucketMultipartUploads",
            "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration",
            "s3:GetEncryptionConfiguration"], [_arn(b) for b in buckets]),
        _allow("ReplicationTargetObjects", [
            "s3:GetReplicationConfiguration", "s3:ReplicateTags", "s3:AbortMultipartUpload", "s3:GetObject",
            "s3:GetObjectVersion", "s3:GetObjectVersionTagging", "s3:PutObject", "s3:PutObjectRetention",
            "s3:PutObjectLegalHold", "s3:DeleteObject", "s3:ReplicateObject", "s3:ReplicateDelete"],
            [_arn(b, "*") for b in buckets]))


TIER_BUCKETS = {"STANDARD_IA": "tier-ia", "GLACIER": "tier-glacier"}


def _tier(p: str) -> dict[str, Any]:
    """On the cold server: the primary's tiering worker stores, reads and removes transitioned data there.

    The remote tiers are server-wide and keep the bucket of the prefix that first set them up, while this user is
    one for every prefix: the tier buckets of any prefix stay reachable, or the next prefix's setup (a dataset's)
    could no longer verify the tiers."""
    buckets = [bucket_of(k, p) for k in TIER_BUCKETS.values()] + [f"*-{k}" for k in TIER_BUCKETS.values()]
    return _policy(_allow("TierObjects", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                          [_arn(b, "*") for b in buckets]),
                   _allow("TierBuckets", ["s3:ListBucket", "s3:GetBucketLocation"], [_arn(b) for b in buckets]))


PRINCIPALS: dict[str, Principal] = {p.name: p for p in (
    Principal("documents", "document service: customers' documents and their presigned links", ("primary", "dr"),
              _documents, "documents: read, write, list; never delete"),
    Principal("backup_writer", "pgBackRest and Redis snapshots", ("primary", "dr"), _backup_writer,
              "backups: read, write, delete markers, multipart; never a version delete or retention change"),
    Principal("log_shipper", "the access-log receiver", ("primary",), _log_shipper,
              "logs-archive: put only (append)"),
    Principal("ingestion", "`kredete ingest` reading documents into the search index", ("primary", "dr"),
              _ingestion, "documents: read, list"),
    Principal("ml_pipeline", "model checkpoints and feature snapshots", ("primary", "dr"), _ml_pipeline,
              "ml-artifacts: read, write, delete markers, multipart; versions expire by lifecycle only"),
    Principal("auditor", "`kredete s3 access-log`, `kredete db verify-audit --archive`", ("primary",), _auditor,
              "logs-archive/s3-access/, audit/, dsr/: read, list"),
    Principal("archiver", "audit partitions and deletion receipts (`kredete retention run`, `kredete dsr erase`)",
              ("primary",), _archiver,
              "logs-archive/audit/, dsr/: put with a COMPLIANCE retention, read, list; never delete"),
    Principal("replicator", "the primary's replication worker, on the DR server", ("dr",), _replicator,
              "DR documents, ml-artifacts, backups: replicate objects, deletes (markers), retention"),
    Principal("tier", "the primary's tiering worker, on the cold server", ("cold",), _tier,
              "cold tier-ia, tier-glacier buckets: read, write, delete"),
)}
assert tuple(PRINCIPALS) == S3_PRINCIPALS, "config.settings.S3_PRINCIPALS must list the same principals"


def credentials(settings: Settings, principal: str) -> tuple[str | None, str | None]:
    """(access key, secret key) of a principal; (None, None): botocore's default chain (an IAM role)."""
    if principal not in PRINCIPALS:
        raise KeyError(f"unknown S3 principal {principal!r}; known: {sorted(PRINCIPALS)}")
    raw = settings.s3_principals.get_secret_value() if settings.s3_principals else "{}"
    entry = json.loads(raw).get(principal) or {}
    return entry.get("access_key"), entry.get("secret_key")


def objects_for(settings: Settings, principal: str) -> ObjectStore:
    """An ObjectStore acting as `principal` (reads fall over to the DR endpoint when it is configured)."""
    from config.settings import resolve

    s = resolve(settings)
    key, secret = credentials(s, principal)
    dr = s.s3_dr_url if "dr" in PRINCIPALS[principal].servers else None
    return ObjectStore(s.s3_url, key, secret, region=s.s3_region, timeout=s.connect_timeout_s,
                       verify=s.s3_ca_file, dr_url=dr, failover_cooldown_s=s.s3_failover_cooldown_s)


def admin_objects(settings: Settings, endpoint: str | None = None) -> ObjectStore:
    """The root/admin ObjectStore of one server (setup, status, tests), never a service's."""
    from config.settings import resolve

    s = resolve(settings)
    key = s.s3_access_key.get_secret_value() if s.s3_access_key else None
    secret = s.s3_secret_key.get_secret_value() if s.s3_secret_key else None
    return ObjectStore(endpoint or s.s3_url, key, secret, region=s.s3_region, timeout=s.connect_timeout_s,
                       verify=s.s3_ca_file)
