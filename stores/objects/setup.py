"""`kredete s3 setup`: every S3 server brought in line with the spec, idempotently, in dependency order.

1. the cold server: the tier buckets and the `tier` principal;
2. the principals (users + policies) on each server they live on; a policy MinIO refuses stops here with
   its reason (AdminError), before anything uses it;
3. the DR server: the replicated buckets (same spec: versioning, object lock, encryption, policy);
4. the primary: remote tiers STANDARD_IA and GLACIER (so the transitions can be applied), then the five
   buckets with their lifecycle, then replication of documents, ml-artifacts and backups to the DR buckets.

Servers not configured (no DR or cold URL) are skipped with a note; so are principals without credentials
(on AWS their IAM roles are made by the infrastructure code, not here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from config.settings import Settings, resolve
from stores.objects.admin import AdminError, MinioAdmin
from stores.objects.buckets import BucketReport, BucketSpec, bucket_of, ensure_buckets, specs_for
from stores.objects.principals import PRINCIPALS, TIER_BUCKETS, Principal, admin_objects, credentials

REPLICATION_RULE = "to-dr"


class PrincipalReport(BaseModel):
    name: str
    user: str
    servers: list[str]
    grant: str


class SetupReport(BaseModel):
    buckets: list[BucketReport] = []
    dr_buckets: list[BucketReport] = []
    cold_buckets: list[BucketReport] = []
    principals: list[PrincipalReport] = []
    tiers: list[str] = []
    notes: list[str] = []


@dataclass
class _Server:
    name: str
    url: str
    admin: MinioAdmin
    close: list[Callable[[], Any]] = field(default_factory=list)


def tier_specs(prefix: str) -> list[BucketSpec]:
    """The cold server's buckets: unversioned (MinIO names each transitioned version uniquely), encrypted by
    default, TLS only; no SSE-header rule (the data MinIO moves there is already encrypted)."""
    return [BucketSpec(bucket_of(b, prefix), f"remote tier {name}", versioning=False, deny_unencrypted_puts=False)
            for name, b in TIER_BUCKETS.items()]


def _admin(s: Settings, url: str) -> MinioAdmin:
    key = s.s3_access_key.get_secret_value() if s.s3_access_key else ""
    secret = s.s3_secret_key.get_secret_value() if s.s3_secret_key else ""
    return MinioAdmin(url, key, secret, region=s.s3_region, verify=s.s3_ca_file)


async def apply_principals(admin: MinioAdmin, server: str, principals: Iterable[Principal], settings: Settings,
                           prefix: str) -> list[str]:
    """Users and policies of the principals living on `server`; returns notes. A policy MinIO refuses
    raises AdminError naming the policy and MinIO's reason, before its user is touched."""
    notes = []
    for p in principals:
        if server not in p.servers:
            continue
        key, secret = credentials(settings, p.name)
        if not key or not secret:
            notes.append(f"{p.name}: no credentials in KREDETE_S3_PRINCIPALS (an IAM role, not made here)")
            continue
        # One policy per bucket prefix, all attached: datasets with other prefixes (a test's, a bench's) share
        # the server's users, and a single policy replaced by each setup locked the others out of their buckets.
        name = key if prefix == "kredete" else f"{key}-{prefix}"
        await admin.add_policy(name, p.policy(prefix))
        info = await admin.user_info(key)
        # setting a password costs a key derivation on both sides (~0.6 s): only when it does not work yet
        if info is None or info.get("status") != "enabled" or not await admin.authenticates(key, secret):
            await admin.add_user(key, secret)
        attached = [n for n in str((info or {}).get("policyName") or "").split(",") if n]
        if name not in attached:
            await admin.set_user_policy(key, ",".join([*attached, name]))
    return notes


async def _ensure_tiers(primary: MinioAdmin, cold_url: str, settings: Settings, prefix: str) -> list[str]:
    key, secret = credentials(settings, "tier")
    if not key or not secret:
        raise AdminError("remote tiers", 0, "NoCredentials", "the `tier` principal has no credentials")
    have = {t.get("Name"): t for t in await primary.tiers()}
    for name, bucket in TIER_BUCKETS.items():
        endpoint = ((have.get(name) or {}).get("MinIO") or {}).get("Endpoint") or ""
        if name in have and endpoint and endpoint.rstrip("/") != cold_url.rstrip("/"):
            # The cold tier moved (another port, another host): a tier kept by name would never verify again.
            await primary.remove_tier(name)
            del have[name]
        if name not in have:
            await primary.add_minio_tier(name, cold_url, key, secret, bucket_of(bucket, prefix), prefix="data/",
                                         region=settings.s3_region)
        await primary.verify_tier(name)
    return list(TIER_BUCKETS)


def replication_config(arn: str) -> dict[str, Any]:
    """Everything, with delete markers and existing objects; version deletes are not replicated (the DR
    copy survives a purge on the primary)."""
    return {"Role": "", "Rules": [{
        "ID": REPLICATION_RULE, "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
        "DeleteMarkerReplication": {"Status": "Enabled"},
        "ExistingObjectReplication": {"Status": "Enabled"},
        "Destination": {"Bucket": arn}}]}


async def _ensure_replication(primary_url: str, admin: MinioAdmin, settings: Settings, dr_url: str,
                              buckets: list[str]) -> None:
    key, secret = credentials(settings, "replicator")
    if not key or not secret:
        raise AdminError("replication", 0, "NoCredentials", "the `replicator` principal has no credentials")
    objects = admin_objects(settings, primary_url)
    try:
        async with objects.client() as s3:
            for bucket in buckets:
                arn = await admin.set_replication_target(bucket, dr_url, key, secret, bucket,
                                                         region=settings.s3_region)
                want = replication_config(arn)
                try:
                    have = (await s3.get_bucket_replication(Bucket=bucket))["ReplicationConfiguration"]
                except Exception:
                    have = {}
                rules = have.get("Rules") or []
                if not (len(rules) == 1 and (rules[0].get("Destination") or {}).get("Bucket") == arn
                        and rules[0].get("Status") == "Enabled"):
                    await s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=want)
    finally:
        await objects.close()


async def setup_all(settings: Settings | None = None, *, retention_days: int | None = None,
                    principals: Iterable[Principal] | None = None,
                    progress: Callable[[str], None] = lambda _m: None) -> SetupReport:
    """Bring every configured S3 server in line with the spec (see the module docstring for the order)."""
    s = resolve(settings)
    prefix = s.s3_bucket_prefix
    chosen = list(PRINCIPALS.values()) if principals is None else list(principals)
    report = SetupReport(principals=[PrincipalReport(name=p.name, user=credentials(s, p.name)[0] or "(IAM role)",
                                                     servers=list(p.servers), grant=p.grant) for p in chosen])
    specs = specs_for(prefix)
    replicated = [sp for sp in specs if sp.replicate_to_dr]
    admins: list[MinioAdmin] = []

    def admin(url: str) -> MinioAdmin:
        a = _admin(s, url)
        admins.append(a)
        return a

    async def buckets_on(url: str, which: list[BucketSpec], transitions: bool) -> list[BucketReport]:
        objects = admin_objects(s, url)
        try:
            return await ensure_buckets(objects, specs=which, retention_days=retention_days, transitions=transitions)
        finally:
            await objects.close()

    try:
        primary = admin(s.s3_url or "")
        if s.s3_cold_url:
            progress("cold tier: buckets and the tier principal")
            report.cold_buckets = await buckets_on(s.s3_cold_url, tier_specs(prefix), False)
            report.notes += await apply_principals(admin(s.s3_cold_url), "cold", chosen, s, prefix)
        else:
            report.notes.append("no cold tier (KREDETE_S3_COLD_URL unset): transitions not applied")
        if s.s3_dr_url:
            progress("DR region: principals and replicated buckets")
            dr_admin = admin(s.s3_dr_url)
            report.notes += await apply_principals(dr_admin, "dr", chosen, s, prefix)
            dr_specs = [BucketSpec(**{**sp.__dict__, "replicate_to_dr": False}) for sp in replicated]
            report.dr_buckets = await buckets_on(s.s3_dr_url, dr_specs, False)
        else:
            report.notes.append("no DR region (KREDETE_S3_DR_URL unset): nothing replicated")
        progress("primary: principals")
        report.notes += await apply_principals(primary, "primary", chosen, s, prefix)
        if s.s3_cold_url:
            progress("primary: remote tiers")
            report.tiers = await _ensure_tiers(primary, s.s3_cold_url, s, prefix)
        progress("primary: buckets")
        # MinIO has the storage classes once its tiers exist; a server without a cold URL (AWS) has them natively
        report.buckets = await buckets_on(s.s3_url or "", list(specs), bool(report.tiers) or not s.s3_cold_url)
        if s.s3_dr_url and not credentials(s, "replicator")[0]:
            report.notes.append("replication: the `replicator` principal has no keys (on AWS the replication rule "
                                "and its IAM role come from the infrastructure code)")
        elif s.s3_dr_url:
            progress("primary: replication to DR")
            await _ensure_replication(s.s3_url or "", primary, s, s.s3_dr_url, [sp.name for sp in replicated])
            objects = admin_objects(s)
            try:
                from stores.objects.buckets import bucket_status

                report.buckets = [
                    r.model_copy(update={"changed": old.changed, "created": old.created})
                    for r, old in zip(await bucket_status(objects, specs=specs), report.buckets, strict=True)]
            finally:
                await objects.close()
    finally:
        await asyncio.gather(*(a.close() for a in admins))
    return report
