"""The five buckets, declared once, and an idempotent `ensure_buckets` that makes a server match them.

What each bucket gets (and what the local MinIO accepts, measured against the pinned build):

- versioning: on everywhere (object-lock buckets have it on from creation).
- object lock, COMPLIANCE mode with a default retention, on `kredete-documents` and `kredete-backups`. Object
  lock can only be enabled when a bucket is created (MinIO refuses it later with `InvalidBucketState`), so
  `ensure_buckets` reports a problem instead of silently leaving such a bucket unlocked.
- default encryption SSE-KMS with the server's KMS key (locally MinIO's static key `kredete-local-key`, see
  `kredete/stack/minio.py`); objects written without SSE headers come back `aws:kms`.
- lifecycle: expiration (logs after 365 days) and noncurrent-version expiration are applied. Storage-class
  transitions (Standard -> IA after 30 days, -> Glacier after 90 days) are **managed-only**: MinIO refuses
  `STANDARD_IA` / `GLACIER` with `InvalidStorageClass` unless a remote tier of that name is configured, so they
  live in the spec and are applied only with `transitions=True` (AWS S3, or MinIO with tiers).
- bucket policy: deny every request not made over TLS (`aws:SecureTransport` is evaluated by MinIO; anonymous
  requests are refused either way). MinIO's root user is the bucket owner and bypasses bucket policies,
  which is why the local stack (root credentials over plain HTTP) keeps working.
- access logging and cross-region replication are **managed-only** here: MinIO has no `PutBucketLogging`
  (it answers `MalformedXML`; it has audit webhooks instead) and replication needs a remote target created
  through its admin API first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from stores.objects.client import ObjectStore

#: Name of the local MinIO's static KMS key (`MINIO_KMS_SECRET_KEY`, kredete/stack/minio.py KMS_KEY_NAME).
LOCAL_KMS_KEY_ID = "kredete-local-key"
#: Seven years, the usual record-keeping period for KYC and financial records.
DEFAULT_RETENTION_DAYS = 7 * 365
LOCK_MODE = "COMPLIANCE"
#: How long overwritten / deleted versions of log archives and other unlocked buckets stay.
NONCURRENT_DAYS = 30

#: Features of the spec a local MinIO cannot apply; `ensure_buckets` leaves them to the managed service.
MANAGED_ONLY = {
    "transitions": "MinIO refuses STANDARD_IA/GLACIER transitions without a configured remote tier "
                   "(InvalidStorageClass); pass transitions=True on AWS S3",
    "access_logging": "MinIO has no PutBucketLogging (MalformedXML); use S3 server access logging on AWS, "
                      "MinIO audit webhooks locally",
    "replication": "cross-region replication to the DR region needs a remote target (MinIO admin API or "
                   "AWS replication role); not configured by ensure_buckets",
}


@dataclass(frozen=True)
class Transition:
    """A storage-class transition (managed-only on the local MinIO)."""

    days: int
    storage_class: str  # STANDARD_IA, GLACIER, ...


@dataclass(frozen=True)
class LifecycleRule:
    id: str
    prefix: str = ""
    expire_days: int | None = None
    noncurrent_days: int | None = None
    transitions: tuple[Transition, ...] = ()  # managed-only; included only when transitions=True

    def to_s3(self, *, with_transitions: bool) -> dict[str, Any] | None:
        rule: dict[str, Any] = {"ID": self.id, "Status": "Enabled", "Filter": {"Prefix": self.prefix}}
        if self.expire_days is not None:
            rule["Expiration"] = {"Days": self.expire_days}
        if self.noncurrent_days is not None:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": self.noncurrent_days}
        if with_transitions and self.transitions:
            rule["Transitions"] = [{"Days": t.days, "StorageClass": t.storage_class} for t in self.transitions]
        has_action = {"Expiration", "NoncurrentVersionExpiration", "Transitions"} & rule.keys()
        return rule if has_action else None

    def describe(self, *, with_transitions: bool = True) -> str:
        parts = []
        if with_transitions:
            parts += [f"->{t.storage_class} {t.days}d" for t in self.transitions]
        if self.expire_days is not None:
            parts.append(f"expire {self.expire_days}d")
        if self.noncurrent_days is not None:
            parts.append(f"noncurrent {self.noncurrent_days}d")
        scope = f" [{self.prefix}]" if self.prefix else ""
        return f"{self.id}{scope}: {', '.join(parts)}"


_ARCHIVE = (Transition(30, "STANDARD_IA"), Transition(90, "GLACIER"))


@dataclass(frozen=True)
class BucketSpec:
    name: str
    purpose: str
    versioning: bool = True
    object_lock: bool = False
    #: default retention of new object versions (object-lock buckets); `ensure_buckets` may override it
    retention_days: int | None = None
    encryption: str = "aws:kms"  # or "AES256" (SSE-S3)
    lifecycle: tuple[LifecycleRule, ...] = ()
    deny_insecure_transport: bool = True
    #: managed-only features the bucket should have on AWS (see MANAGED_ONLY)
    access_logging: bool = True
    replicate_to_dr: bool = False
    document_types: tuple[str, ...] = field(default=())

    def renamed(self, name: str) -> BucketSpec:
        """The same spec under another name (tests use throwaway buckets)."""
        return replace(self, name=name)

    def managed_only(self) -> list[str]:
        out = [", ".join(f"{t.storage_class} {t.days}d" for t in r.transitions) for r in self.lifecycle
               if r.transitions]
        if self.access_logging:
            out.append("access logs")
        if self.replicate_to_dr:
            out.append("CRR to DR")
        return out

    def policy(self) -> dict[str, Any]:
        arn = f"arn:aws:s3:::{self.name}"
        return {"Version": "2012-10-17", "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": ["*"]}, "Action": ["s3:*"],
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": ["false"]}},
        }]}


SPECS: tuple[BucketSpec, ...] = (
    BucketSpec("kredete-documents", "customer documents: KYC identity docs, credit report PDFs, dispute letters",
               object_lock=True, retention_days=DEFAULT_RETENTION_DAYS,
               lifecycle=(LifecycleRule("archive", transitions=_ARCHIVE),), replicate_to_dr=True,
               document_types=("kyc_identity", "credit_report", "dispute_letter", "compliance_report")),
    BucketSpec("kredete-ml-artifacts", "model checkpoints and feature snapshots",
               lifecycle=(LifecycleRule("archive-old-versions", noncurrent_days=90, transitions=_ARCHIVE),),
               document_types=("model_checkpoint",)),
    BucketSpec("kredete-backups", "database backups and exports", object_lock=True,
               retention_days=DEFAULT_RETENTION_DAYS, lifecycle=(LifecycleRule("archive", transitions=_ARCHIVE),),
               replicate_to_dr=True, document_types=("backup",)),
    BucketSpec("kredete-logs-archive", "archived application and audit logs",
               lifecycle=(LifecycleRule("expire-logs", expire_days=365, noncurrent_days=NONCURRENT_DAYS,
                                        transitions=_ARCHIVE),),
               access_logging=False, document_types=("log",)),
    BucketSpec("kredete-static-assets", "static web assets (served through a CDN, never public here)",
               lifecycle=(LifecycleRule("old-versions", noncurrent_days=NONCURRENT_DAYS),),
               document_types=("asset",)),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


def specs_for(prefix: str = "kredete") -> tuple[BucketSpec, ...]:
    """The five buckets named for an environment or dataset (`<prefix>-documents`, ...)."""
    return tuple(s.renamed(prefix + s.name.removeprefix("kredete")) for s in SPECS)


def documents_bucket(prefix: str = "kredete") -> str:
    return f"{prefix}-documents"


class BucketReport(BaseModel):
    """What a bucket looks like after `ensure_buckets` (or as `bucket_status` reads it)."""

    name: str
    exists: bool = True
    created: bool = False
    changed: list[str] = []
    problems: list[str] = []
    versioning: str = "Off"
    lock_enabled: bool = False
    lock_mode: str | None = None
    retention_days: int | None = None
    encryption: str | None = None
    kms_key_id: str | None = None
    lifecycle: list[str] = []
    policy: bool = False
    managed_only: list[str] = []


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _canon(value: Any) -> Any:
    """Order- and scalar/list-insensitive form of a policy document (MinIO rewrites scalars as lists)."""
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canon(v) for v in value]
        return items[0] if len(items) == 1 else sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _rule_key(rule: dict[str, Any]) -> tuple:
    flt = rule.get("Filter") or {}
    prefix = flt.get("Prefix", rule.get("Prefix", "")) or ""
    exp = (rule.get("Expiration") or {}).get("Days")
    nc = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
    trans = tuple(sorted((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions") or []))
    return (rule.get("ID"), rule.get("Status"), prefix, exp, nc, trans)


def _describe(rule: dict[str, Any]) -> str:
    rid, status, prefix, exp, nc, trans = _rule_key(rule)
    text = LifecycleRule(str(rid or "?"), prefix, exp, nc, tuple(Transition(d, c) for d, c in trans)).describe()
    return text if status == "Enabled" else f"{text} (disabled)"


@dataclass
class _State:
    exists: bool
    versioning: str = "Off"
    lock_enabled: bool = False
    lock_mode: str | None = None
    retention_days: int | None = None
    encryption: tuple[str | None, str | None] = (None, None)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] | None = None


async def _call(coro: Any, *missing: str) -> Any:
    """Await an S3 call; None when it fails with one of the `missing` codes (no such configuration)."""
    try:
        return await coro
    except ClientError as exc:
        if _code(exc) in missing:
            return None
        raise


async def _read(s3: Any, name: str) -> _State:
    try:
        await s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return _State(exists=False)
        raise
    st = _State(exists=True)
    ver = await s3.get_bucket_versioning(Bucket=name)
    st.versioning = ver.get("Status") or "Off"
    lock = await _call(s3.get_object_lock_configuration(Bucket=name), "ObjectLockConfigurationNotFoundError")
    if lock:
        cfg = lock.get("ObjectLockConfiguration") or {}
        st.lock_enabled = cfg.get("ObjectLockEnabled") == "Enabled"
        ret = (cfg.get("Rule") or {}).get("DefaultRetention") or {}
        st.lock_mode = ret.get("Mode")
        st.retention_days = ret.get("Days") if "Days" in ret else (ret["Years"] * 365 if "Years" in ret else None)
    enc = await _call(s3.get_bucket_encryption(Bucket=name), "ServerSideEncryptionConfigurationNotFoundError")
    if enc:
        rules = (enc.get("ServerSideEncryptionConfiguration") or {}).get("Rules") or [{}]
        default = rules[0].get("ApplyServerSideEncryptionByDefault") or {}
        st.encryption = (default.get("SSEAlgorithm"), default.get("KMSMasterKeyID"))
    lc = await _call(s3.get_bucket_lifecycle_configuration(Bucket=name), "NoSuchLifecycleConfiguration")
    st.lifecycle = (lc or {}).get("Rules") or []
    pol = await _call(s3.get_bucket_policy(Bucket=name), "NoSuchBucketPolicy")
    st.policy = json.loads(pol["Policy"]) if pol and pol.get("Policy") else None
    return st


def _report(spec: BucketSpec, st: _State, *, created: bool = False, changed: Sequence[str] = (),
            problems: Sequence[str] = ()) -> BucketReport:
    return BucketReport(
        name=spec.name, exists=st.exists, created=created, changed=list(changed), problems=list(problems),
        versioning=st.versioning, lock_enabled=st.lock_enabled, lock_mode=st.lock_mode,
        retention_days=st.retention_days, encryption=st.encryption[0], kms_key_id=st.encryption[1],
        lifecycle=[_describe(r) for r in st.lifecycle],
        policy=st.policy is not None, managed_only=spec.managed_only())


async def _ensure_one(s3: Any, spec: BucketSpec, *, kms_key_id: str | None, transitions: bool) -> BucketReport:
    changed: list[str] = []
    problems: list[str] = []
    st = await _read(s3, spec.name)
    created = False
    if not st.exists:
        try:
            await s3.create_bucket(Bucket=spec.name, ObjectLockEnabledForBucket=spec.object_lock)
            created = True
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        changed.append("created" + (" with object lock" if spec.object_lock else ""))
        st = await _read(s3, spec.name)

    if spec.versioning and st.versioning != "Enabled":
        await s3.put_bucket_versioning(Bucket=spec.name, VersioningConfiguration={"Status": "Enabled"})
        changed.append("versioning enabled")

    if spec.object_lock:
        if not st.lock_enabled:
            problems.append("object lock is not enabled and can only be enabled at creation: "
                            "recreate the bucket (copy its objects first)")
        elif spec.retention_days and (st.lock_mode, st.retention_days) != (LOCK_MODE, spec.retention_days):
            await s3.put_object_lock_configuration(Bucket=spec.name, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": LOCK_MODE, "Days": spec.retention_days}}})
            changed.append(f"default retention {LOCK_MODE} {spec.retention_days}d")
    elif st.lock_enabled:
        problems.append("object lock is enabled but the spec has none (it cannot be turned off)")

    want_enc = (spec.encryption, kms_key_id if spec.encryption == "aws:kms" else None)
    if st.encryption != want_enc:
        default: dict[str, str] = {"SSEAlgorithm": spec.encryption}
        if want_enc[1]:
            default["KMSMasterKeyID"] = want_enc[1]
        await s3.put_bucket_encryption(Bucket=spec.name, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
        changed.append(f"default encryption {spec.encryption}")

    rules = [r for r in (x.to_s3(with_transitions=transitions) for x in spec.lifecycle) if r]
    if sorted(map(_rule_key, rules)) != sorted(map(_rule_key, st.lifecycle)):
        if rules:
            await s3.put_bucket_lifecycle_configuration(Bucket=spec.name, LifecycleConfiguration={"Rules": rules})
        else:
            await s3.delete_bucket_lifecycle(Bucket=spec.name)
        changed.append(f"lifecycle ({len(rules)} rules)")

    want_policy = spec.policy() if spec.deny_insecure_transport else None
    if _canon(want_policy) != _canon(st.policy):
        if want_policy:
            await s3.put_bucket_policy(Bucket=spec.name, Policy=json.dumps(want_policy))
        else:
            await s3.delete_bucket_policy(Bucket=spec.name)
        changed.append("policy")

    if changed:
        st = await _read(s3, spec.name)
    return _report(spec, st, created=created, changed=changed, problems=problems)


def _specs(specs: Iterable[BucketSpec] | None, retention_days: int | None) -> list[BucketSpec]:
    out = list(SPECS if specs is None else specs)
    if retention_days is not None:
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1 (S3 default retention is whole days)")
        out = [replace(s, retention_days=retention_days) if s.object_lock else s for s in out]
    return out


async def ensure_buckets(objects: ObjectStore, *, retention_days: int | None = DEFAULT_RETENTION_DAYS,
                         specs: Iterable[BucketSpec] | None = None, kms_key_id: str | None = LOCAL_KMS_KEY_ID,
                         transitions: bool = False) -> list[BucketReport]:
    """Create the buckets and bring their configuration in line with the spec; re-running changes nothing.

    `retention_days` overrides the default retention of the object-lock buckets (`None` keeps the spec's);
    `transitions=True` also applies the storage-class transitions (AWS S3, or MinIO with remote tiers).
    """
    reports = []
    async with objects.client() as s3:
        for spec in _specs(specs, retention_days):
            reports.append(await _ensure_one(s3, spec, kms_key_id=kms_key_id, transitions=transitions))
    return reports


async def bucket_status(objects: ObjectStore, *, specs: Iterable[BucketSpec] | None = None) -> list[BucketReport]:
    """Read each bucket's configuration without changing anything."""
    reports = []
    async with objects.client() as s3:
        for spec in _specs(specs, None):
            reports.append(_report(spec, await _read(s3, spec.name)))
    return reports
