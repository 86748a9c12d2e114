"""The five buckets, declared once, and an idempotent `ensure_buckets` that makes a server match them.

What each bucket gets (and what the local MinIO accepts, measured against the pinned build):

- versioning: on everywhere (object-lock buckets have it on from creation).
- object lock, COMPLIANCE mode with a default retention, on `kredete-documents`, `kredete-backups` and
  `kredete-logs-archive` (365 days there, the logs' lifetime; archived audit partitions and deletion receipts
  are put with their own, longer retention by the `archiver` principal). Object
  lock can only be enabled when a bucket is created (MinIO refuses it later with `InvalidBucketState`), so
  `ensure_buckets` reports a problem instead of silently leaving such a bucket unlocked.
- default encryption SSE-KMS with the server's KMS key (locally MinIO's static key `kredete-local-key`, see
  `kredete/stack/minio.py`); objects written without SSE headers come back `aws:kms`.
- lifecycle: expiration (logs after 365 days), noncurrent-version expiration, and the storage-class transitions
  (Standard -> IA after 30 days, -> Glacier after 90 days) once the server has those storage classes: MinIO
  refuses `STANDARD_IA` / `GLACIER` with `InvalidStorageClass` until remote tiers of those names exist
  (`kredete s3 setup` adds them on the cold MinIO, then applies the transitions).
- bucket policy: deny every request not made over TLS (`aws:SecureTransport`) and (documents, logs, assets)
  every put without the SSE header or with another algorithm. MinIO evaluates bucket policies for anonymous
  requests only; an authenticated user is judged by its own IAM policy, so each principal's policy repeats
  these rules (`stores/objects/principals.py`); on AWS both apply.
- access logging: MinIO has no `PutBucketLogging` (it answers `MalformedXML`); its audit log goes to the
  access-log receiver instead (`services/access_log.py`), server-wide.
- replication to the DR region: `replicate_to_dr` buckets, configured by `stores/objects/setup.py` (it needs a
  remote target, created through MinIO's admin API).
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
#: Access logs are kept (and locked) a year; archived audit partitions and deletion receipts seven years.
LOG_DAYS = 365
RECORD_DAYS = DEFAULT_RETENTION_DAYS

@dataclass(frozen=True)
class Transition:
    """A storage-class transition. MinIO applies it once a remote tier of that name exists
    (`kredete s3 setup` adds STANDARD_IA and GLACIER on the cold MinIO); without one it refuses the rule
    with `InvalidStorageClass`. On AWS the storage classes exist as such."""

    days: int
    storage_class: str  # STANDARD_IA, GLACIER, ...


@dataclass(frozen=True)
class LifecycleRule:
    id: str
    prefix: str = ""
    expire_days: int | None = None
    noncurrent_days: int | None = None
    #: applied only when ensure_buckets(transitions=True): the storage classes must exist on the server
    transitions: tuple[Transition, ...] = ()

    def to_s3_rules(self, *, with_transitions: bool) -> list[dict[str, Any]]:
        """The S3 rules of this rule: one per transition (MinIO takes one transition per rule; AWS takes
        either form), the first carrying the expirations; `<id>-<class>` for the later transitions."""
        rule: dict[str, Any] = {"ID": self.id, "Status": "Enabled", "Filter": {"Prefix": self.prefix}}
        if self.expire_days is not None:
            rule["Expiration"] = {"Days": self.expire_days}
        if self.noncurrent_days is not None:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": self.noncurrent_days}
        steps = list(self.transitions) if with_transitions else []
        if steps:
            first = steps.pop(0)
            rule["Transitions"] = [{"Days": first.days, "StorageClass": first.storage_class}]
        out = [rule] if {"Expiration", "NoncurrentVersionExpiration", "Transitions"} & rule.keys() else []
        out += [{"ID": f"{self.id}-{t.storage_class.lower().replace('_', '-')}", "Status": "Enabled",
                 "Filter": {"Prefix": self.prefix},
                 "Transitions": [{"Days": t.days, "StorageClass": t.storage_class}]} for t in steps]
        return out

    def to_s3(self, *, with_transitions: bool) -> dict[str, Any] | None:
        """The first S3 rule (the one with the expirations), or None when the rule has no action."""
        rules = self.to_s3_rules(with_transitions=with_transitions)
        return rules[0] if rules else None

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
    #: refuse puts without an SSE header. Not where writers use multipart uploads (backups: pgBackRest;
    #: ml-artifacts: checkpoints): a part upload is an s3:PutObject without the header, so the rule would refuse
    #: them all; nor on the tier buckets (MinIO moves already-encrypted data there). Default SSE-KMS covers those.
    deny_unencrypted_puts: bool = True
    #: replicated to the DR region's bucket of the same name (`kredete s3 setup`)
    replicate_to_dr: bool = False
    document_types: tuple[str, ...] = field(default=())

    def renamed(self, name: str) -> BucketSpec:
        """The same spec under another name (tests use throwaway buckets)."""
        return replace(self, name=name)

    def transitions(self) -> list[str]:
        return [", ".join(f"{t.storage_class} {t.days}d" for t in r.transitions) for r in self.lifecycle
                if r.transitions]

    def policy(self) -> dict[str, Any]:
        """Deny, to every principal: any request not over TLS, and a put without an SSE header (the bucket's
        default would still encrypt it; the header proves the writer asked for it) or with another algorithm."""
        arn = f"arn:aws:s3:::{self.name}"
        transport = {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": ["*"]},
                     "Action": ["s3:*"], "Resource": [arn, f"{arn}/*"],
                     "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}}
        if not self.deny_unencrypted_puts:
            return {"Version": "2012-10-17", "Statement": [transport]}
        return {"Version": "2012-10-17", "Statement": [
            transport,
            {"Sid": "DenyUnencryptedPuts", "Effect": "Deny", "Principal": {"AWS": ["*"]}, "Action": ["s3:PutObject"],
             "Resource": [f"{arn}/*"], "Condition": {"Null": {"s3:x-amz-server-side-encryption": ["true"]}}},
            {"Sid": "DenyOtherEncryption", "Effect": "Deny", "Principal": {"AWS": ["*"]}, "Action": ["s3:PutObject"],
             "Resource": [f"{arn}/*"],
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": [self.encryption]}}},
        ]}


SPECS: tuple[BucketSpec, ...] = (
    BucketSpec("kredete-documents", "customer documents: KYC identity docs, credit report PDFs, dispute letters",
               object_lock=True, retention_days=DEFAULT_RETENTION_DAYS,
               lifecycle=(LifecycleRule("archive", transitions=_ARCHIVE),), replicate_to_dr=True,
               document_types=("kyc_identity", "credit_report", "dispute_letter", "compliance_report")),
    BucketSpec("kredete-ml-artifacts", "model checkpoints and feature snapshots",
               lifecycle=(LifecycleRule("archive-old-versions", noncurrent_days=90, transitions=_ARCHIVE),),
               replicate_to_dr=True, deny_unencrypted_puts=False, document_types=("model_checkpoint",)),
    BucketSpec("kredete-backups", "database backups and exports", object_lock=True,
               retention_days=DEFAULT_RETENTION_DAYS, lifecycle=(LifecycleRule("archive", transitions=_ARCHIVE),),
               replicate_to_dr=True, deny_unencrypted_puts=False, document_types=("backup",)),
    # dsr area: locked like the other record buckets; rules per prefix (retention policy file, `kredete retention
    # plan`): access logs a year, audit archives and deletion receipts seven years.
    BucketSpec("kredete-logs-archive", "archived application and audit logs, deletion receipts", object_lock=True,
               retention_days=LOG_DAYS,
               lifecycle=(LifecycleRule("expire-logs", prefix="s3-access/", expire_days=LOG_DAYS,
                                        noncurrent_days=NONCURRENT_DAYS, transitions=_ARCHIVE),
                          LifecycleRule("audit-archive", prefix="audit/", expire_days=RECORD_DAYS,
                                        noncurrent_days=NONCURRENT_DAYS, transitions=_ARCHIVE),
                          LifecycleRule("dsr-receipts", prefix="dsr/", expire_days=RECORD_DAYS,
                                        noncurrent_days=NONCURRENT_DAYS)),
               document_types=("log", "audit_archive", "deletion_receipt")),
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


def logs_bucket(prefix: str = "kredete") -> str:
    return f"{prefix}-logs-archive"


def bucket_of(kind: str, prefix: str = "kredete") -> str:
    """`documents`, `ml-artifacts`, `backups`, `logs-archive`, `static-assets` -> the bucket's name."""
    return f"{prefix}-{kind}"


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
    #: destinations of the bucket's replication rules (ARNs)
    replication: list[str] = []
    #: what the spec asks for that this server does not have yet (transitions without tiers, replication)
    not_applied: list[str] = []


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _canon(value: Any) -> Any:
    """Order- and scalar/list-insensitive form of a policy document (MinIO rewrites scalars as lists)."""
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canon(v) for v in value]
        return items[0] if len(items) == 1 else sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, bool):  # MinIO answers the Null condition's "true" as a JSON boolean
        return str(value).lower()
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
    replication: list[str] = field(default_factory=list)


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
    rep = await _call(s3.get_bucket_replication(Bucket=name), "ReplicationConfigurationNotFoundError",
                      "XMinioAdminRemoteTargetNotFoundError")
    st.replication = [(r.get("Destination") or {}).get("Bucket", "") for r in
                      ((rep or {}).get("ReplicationConfiguration") or {}).get("Rules", [])
                      if r.get("Status") == "Enabled"]
    return st


def _report(spec: BucketSpec, st: _State, *, created: bool = False, changed: Sequence[str] = (),
            problems: Sequence[str] = ()) -> BucketReport:
    not_applied = []
    applied = {(t.get("Days"), t.get("StorageClass")) for r in st.lifecycle for t in r.get("Transitions") or []}
    for rule in spec.lifecycle:
        missing = [t for t in rule.transitions if (t.days, t.storage_class) not in applied]
        if missing:
            not_applied.append("transitions " + ", ".join(f"{t.storage_class} {t.days}d" for t in missing))
    if spec.replicate_to_dr and not st.replication:
        not_applied.append("replication to DR")
    return BucketReport(
        name=spec.name, exists=st.exists, created=created, changed=list(changed), problems=list(problems),
        versioning=st.versioning, lock_enabled=st.lock_enabled, lock_mode=st.lock_mode,
        retention_days=st.retention_days, encryption=st.encryption[0], kms_key_id=st.encryption[1],
        lifecycle=[_describe(r) for r in st.lifecycle],
        policy=st.policy is not None, replication=st.replication, not_applied=not_applied)


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

    rules = [r for x in spec.lifecycle for r in x.to_s3_rules(with_transitions=transitions)]
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


async def ensure_buckets(objects: ObjectStore, *, retention_days: int | None = None,
                         specs: Iterable[BucketSpec] | None = None, kms_key_id: str | None = LOCAL_KMS_KEY_ID,
                         transitions: bool = False) -> list[BucketReport]:
    """Create the buckets and bring their configuration in line with the spec; re-running changes nothing.

    `retention_days` overrides the default retention of the object-lock buckets (`None`: each spec's own);
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
