"""Lifecycle transitions that really run (the cold MinIO as remote tier), replication to the DR region, and
reads falling over to DR while the primary MinIO is stopped for real."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid

import pytest

from stores.errors import StoreUnavailable
from stores.objects.admin import MinioAdmin
from stores.objects.buckets import SPEC_BY_NAME, LifecycleRule, Transition, bucket_of, ensure_buckets
from stores.objects.principals import TIER_BUCKETS, admin_objects, objects_for


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


async def _drop(objects, name: str) -> None:
    """Best effort: every version, then the bucket (a transitioned version's removal is asynchronous)."""
    import contextlib

    from botocore.exceptions import ClientError

    for _ in range(10):
        with contextlib.suppress(ClientError):
            async with objects.client() as s3:
                res = await s3.list_object_versions(Bucket=name)
                for v in res.get("Versions", []) + res.get("DeleteMarkers", []):
                    await s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
                await s3.delete_bucket(Bucket=name)
                return
        await asyncio.sleep(0.5)


async def test_the_spec_transitions_are_applied_on_the_primary(s3_ready):
    by_name = {b.name: b for b in s3_ready.buckets}
    for name in ("kredete-documents", "kredete-backups", "kredete-ml-artifacts", "kredete-logs-archive"):
        rules = " | ".join(by_name[name].lifecycle)
        assert "->STANDARD_IA 30d" in rules and "->GLACIER 90d" in rules, rules
        assert by_name[name].not_applied == []


@pytest.mark.parametrize("tier", ["STANDARD_IA", "GLACIER"])
async def test_an_object_moves_to_the_tier_and_reads_back(s3_ready, s3_settings, tier):
    """Time-compressed: the spec's rule with `Days: 0` (due at once, MinIO's immediate tiering) instead of
    30 / 90; the object's data leaves the primary for the cold MinIO and is still read through the primary."""
    primary = admin_objects(s3_settings)
    cold = admin_objects(s3_settings, s3_settings.s3_cold_url)
    name = f"t-tier-{secrets.token_hex(4)}"
    rule = LifecycleRule("archive-now", transitions=(Transition(0, tier),))
    spec = SPEC_BY_NAME["kredete-static-assets"].renamed(name)
    spec = type(spec)(**{**spec.__dict__, "lifecycle": (rule,)})
    body = secrets.token_bytes(64 * 1024)
    try:
        await ensure_buckets(primary, specs=[spec], transitions=True)
        await primary.put(name, "old/report.pdf", body, content_type="application/pdf")

        async def moved():
            head = await primary.head(name, "old/report.pdf")
            return head if head.get("StorageClass") == tier else None

        head = await _until(moved, 60, f"the object to reach {tier}")
        assert head["ServerSideEncryption"] == "aws:kms"
        # the data is on the cold server now, in the tier's bucket (MinIO's own object naming). The tier is
        # server-wide: whichever dataset (prefix) set it up first named its bucket, so ask the primary.
        admin = MinioAdmin(s3_settings.s3_url, s3_settings.s3_access_key.get_secret_value(),
                           s3_settings.s3_secret_key.get_secret_value(), region=s3_settings.s3_region,
                           verify=s3_settings.s3_ca_file)
        try:
            tiers = {t["Name"]: t for t in await admin.tiers()}
        finally:
            await admin.close()
        tier_bucket = tiers[tier]["MinIO"]["Bucket"]
        assert tier_bucket.endswith(TIER_BUCKETS[tier]), tier_bucket
        stored = await cold.list_keys(tier_bucket, "data/")
        assert stored, "nothing in the tier bucket"
        assert await primary.get(name, "old/report.pdf") == body  # read back through the primary
    finally:
        await _drop(primary, name)
        await primary.close()
        await cold.close()


async def test_documents_replicate_to_dr_with_versions_and_lock(s3_ready, s3_settings):
    docs = objects_for(s3_settings, "documents")
    dr = admin_objects(s3_settings, s3_settings.s3_dr_url)
    key = f"users/{uuid.uuid4()}/kyc/replicated.txt"
    bucket = bucket_of("documents")
    try:
        v1 = await docs.put(bucket, key, b"v1", content_type="text/plain")
        v2 = await docs.put(bucket, key, b"v2", content_type="text/plain")

        async def both_versions():
            async with dr.client() as s3:
                res = await s3.list_object_versions(Bucket=bucket, Prefix=key)
            return {v["VersionId"] for v in res.get("Versions", [])} >= {v1, v2}

        await _until(both_versions, 30, "both versions on DR")
        assert await dr.get(bucket, key, version_id=v1) == b"v1"  # same version ids on both sides
        head = await dr.head(bucket, key)
        assert head["ObjectLockMode"] == "COMPLIANCE" and head["ServerSideEncryption"] == "aws:kms"
        src = await docs.head(bucket, key)
        assert src["ReplicationStatus"] == "COMPLETED"
    finally:
        await docs.close()
        await dr.close()


async def test_reads_fall_over_to_dr_when_the_primary_is_stopped(s3_ready, s3_settings):
    """Stops the primary MinIO process for real, reads through DR, then starts it again."""
    from kredete.stack.minio import MinioServer
    from services.documents import DocumentService

    bucket = bucket_of("documents")
    user = uuid.uuid4()
    key = f"users/{user}/kyc/failover.txt"
    writer = objects_for(s3_settings, "documents")
    await writer.put(bucket, key, b"still here", content_type="text/plain", metadata={"user-id": str(user)})
    dr = admin_objects(s3_settings, s3_settings.s3_dr_url)

    async def replicated():
        try:
            return await dr.get(bucket, key) == b"still here"
        except Exception:
            return False

    await _until(replicated, 30, "the object on DR")
    await dr.close()
    await writer.close()

    reader = objects_for(s3_settings, "ingestion")
    service = DocumentService.from_settings(s3_settings)
    primary = MinioServer()
    primary.stop()
    try:
        assert not primary.healthy()
        assert await reader.get(bucket, key) == b"still here"  # primary refused the connection: DR served it
        assert reader.read_endpoint() == s3_settings.s3_dr_url
        assert key in await reader.list_keys(bucket, f"users/{user}/")
        link = await service.link(user, "kyc/failover.txt")  # the link is signed for DR
        assert link.url.startswith(s3_settings.s3_dr_url)
        import ssl

        import httpx

        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=s3_settings.s3_ca_file)) as http:
            assert (await http.get(link.url)).content == b"still here"
        with pytest.raises(StoreUnavailable):  # writes never go to the replica
            await service.objects.put(bucket, f"users/{user}/kyc/new.txt", b"x")
    finally:
        primary.start()
        await reader.close()
        await service.close()
