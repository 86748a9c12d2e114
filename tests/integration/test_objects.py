"""S3 against the real local MinIO: bucket spec, SSE-KMS, object lock, versioning, presigned URLs, ingestion.

Every test uses throwaway buckets (`t-<random>`), removed at the end, except the idempotency test of the five
real buckets. Objects are only ever locked with a few seconds of retention, so the throwaway buckets can be
deleted again (a COMPLIANCE lock cannot be lifted, not even by the root user).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from botocore.exceptions import ClientError
from rich.console import Console

from stores.objects.buckets import (
    LOCAL_KMS_KEY_ID,
    LOCK_MODE,
    SPEC_BY_NAME,
    SPECS,
    bucket_status,
    ensure_buckets,
)
from stores.objects.client import BUCKETS, ObjectStore


@pytest.fixture(scope="session")
async def objects(s3_settings) -> ObjectStore:
    s = s3_settings
    store = await ObjectStore(s.s3_url, s.s3_access_key.get_secret_value(), s.s3_secret_key.get_secret_value(),
                              region=s.s3_region, verify=s.s3_ca_file).connect()
    yield store
    await store.close()


async def _drop_bucket(objects: ObjectStore, name: str) -> None:
    """Delete every version and delete marker, then the bucket (best effort: locked versions stay)."""
    async with objects.client() as s3:
        try:
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=name)
            async for page in pages:
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    with contextlib.suppress(ClientError):
                        await s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
            await s3.delete_bucket(Bucket=name)
        except ClientError:
            pass


@pytest.fixture
async def throwaway(objects):
    """Factory of throwaway bucket names; every bucket named is dropped after the test."""
    names: list[str] = []

    def make(tag: str = "") -> str:
        names.append(f"t-{tag}{secrets.token_hex(5)}")
        return names[-1]

    yield make
    for name in names:
        await _drop_bucket(objects, name)


async def _error_code(coro) -> str:
    try:
        await coro
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    raise AssertionError("the call should have failed")


# --- bucket spec ------------------------------------------------------------------------------------------

async def test_spec_covers_the_five_buckets():
    assert tuple(s.name for s in SPECS) == BUCKETS
    assert all(s.versioning for s in SPECS)
    assert {s.name for s in SPECS if s.object_lock} == {"kredete-documents", "kredete-backups", "kredete-logs-archive"}
    from kredete.stack.minio import KMS_KEY_NAME

    assert KMS_KEY_NAME == LOCAL_KMS_KEY_ID


async def test_buckets_created_with_the_spec(objects, throwaway):
    specs = [s.renamed(throwaway()) for s in SPECS]
    reports = await ensure_buckets(objects, specs=specs, retention_days=1)
    assert all(r.created and not r.problems for r in reports)
    async with objects.client() as s3:
        for spec in specs:
            ver = await s3.get_bucket_versioning(Bucket=spec.name)
            assert ver["Status"] == "Enabled"

            enc = await s3.get_bucket_encryption(Bucket=spec.name)
            default = enc["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
            assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": LOCAL_KMS_KEY_ID}

            if spec.object_lock:
                lock = (await s3.get_object_lock_configuration(Bucket=spec.name))["ObjectLockConfiguration"]
                assert lock["ObjectLockEnabled"] == "Enabled"
                assert lock["Rule"]["DefaultRetention"] == {"Mode": LOCK_MODE, "Days": 1}
            else:
                assert await _error_code(s3.get_object_lock_configuration(Bucket=spec.name)) == \
                    "ObjectLockConfigurationNotFoundError"

            expected = [r.to_s3(with_transitions=False) for r in spec.lifecycle]
            expected = [r for r in expected if r]
            if expected:
                rules = (await s3.get_bucket_lifecycle_configuration(Bucket=spec.name))["Rules"]
                assert [(r["ID"], r.get("Expiration"), r.get("NoncurrentVersionExpiration")) for r in rules] == \
                    [(r["ID"], r.get("Expiration"), r.get("NoncurrentVersionExpiration")) for r in expected]
                assert not any("Transitions" in r for r in rules)  # managed-only
            else:
                assert await _error_code(s3.get_bucket_lifecycle_configuration(Bucket=spec.name)) == \
                    "NoSuchLifecycleConfiguration"

            policy = json.loads((await s3.get_bucket_policy(Bucket=spec.name))["Policy"])
            by_sid = {st["Sid"]: st for st in policy["Statement"]}
            stmt = by_sid["DenyInsecureTransport"]
            assert stmt["Effect"] == "Deny" and stmt["Condition"] == {"Bool": {"aws:SecureTransport": ["false"]}}
            if spec.deny_unencrypted_puts:
                cond = by_sid["DenyUnencryptedPuts"]["Condition"]["Null"]["s3:x-amz-server-side-encryption"]
                assert [str(v).lower() for v in cond] == ["true"]
            else:
                assert set(by_sid) == {"DenyInsecureTransport"}

    logs = reports[[s.name for s in SPECS].index("kredete-logs-archive")]
    assert logs.lifecycle == ["expire-logs [s3-access/]: expire 365d, noncurrent 30d",
                              "audit-archive [audit/]: expire 2555d, noncurrent 30d",
                              "dsr-receipts [dsr/]: expire 2555d, noncurrent 30d"]
    status = await bucket_status(objects, specs=specs)
    assert [r.model_dump(exclude={"created", "changed"}) for r in status] == \
        [r.model_dump(exclude={"created", "changed"}) for r in reports]


async def test_ensure_buckets_twice_is_a_no_op(objects, s3_ready):
    """The five real buckets (as `kredete s3 setup` left them, transitions included): nothing changes."""
    await ensure_buckets(objects, transitions=True)
    again = await ensure_buckets(objects, transitions=True)
    assert [r.name for r in again] == list(BUCKETS)
    assert [(r.name, r.changed, r.problems) for r in again] == [(b, [], []) for b in BUCKETS]
    docs = again[0]
    assert (docs.lock_enabled, docs.lock_mode, docs.retention_days) == (True, "COMPLIANCE", 7 * 365)


async def test_object_lock_cannot_be_added_later(objects, throwaway):
    name = throwaway()
    plain = replace(SPEC_BY_NAME["kredete-documents"], object_lock=False).renamed(name)
    await ensure_buckets(objects, specs=[plain])
    (report,) = await ensure_buckets(objects, specs=[plain], retention_days=1)
    assert report.problems == []  # the unlocked spec is satisfied
    (report,) = await ensure_buckets(objects, specs=[SPEC_BY_NAME["kredete-documents"].renamed(name)],
                                     retention_days=1)
    assert report.problems and "only be enabled at creation" in report.problems[0]
    assert not report.lock_enabled


async def test_transitions_need_a_remote_tier_on_minio(s3_settings):
    """MinIO refuses the storage classes until remote tiers of those names exist: the DR server has none
    (the primary's are added by `kredete s3 setup`, see test_s3_lifecycle.py)."""
    from stores.objects.principals import admin_objects

    dr = await admin_objects(s3_settings, s3_settings.s3_dr_url).connect()
    name = f"t-{secrets.token_hex(5)}"
    spec = SPEC_BY_NAME["kredete-logs-archive"].renamed(name)
    try:
        with pytest.raises(ClientError) as exc:
            await ensure_buckets(dr, specs=[spec], transitions=True)
        assert exc.value.response["Error"]["Code"] == "InvalidStorageClass"
        (report,) = await ensure_buckets(dr, specs=[spec])
        assert report.lifecycle == ["expire-logs [s3-access/]: expire 365d, noncurrent 30d",
                                    "audit-archive [audit/]: expire 2555d, noncurrent 30d",
                                    "dsr-receipts [dsr/]: expire 2555d, noncurrent 30d"]
        assert report.not_applied == ["transitions STANDARD_IA 30d, GLACIER 90d"] * 2  # access logs, audit archive
    finally:
        await _drop_bucket(dr, name)
        await dr.close()


# --- object lock, versioning, SSE ---------------------------------------------------------------------

async def test_locked_version_cannot_be_deleted_before_retention(objects, throwaway):
    name = throwaway("lock-")
    async with objects.client() as s3:
        await s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        until = datetime.now(UTC) + timedelta(seconds=4)
        put = await s3.put_object(Bucket=name, Key="kyc/doc.txt", Body=b"kyc", ObjectLockMode="COMPLIANCE",
                                  ObjectLockRetainUntilDate=until)
        vid = put["VersionId"]
        retention = (await s3.get_object_retention(Bucket=name, Key="kyc/doc.txt", VersionId=vid))["Retention"]
        assert retention["Mode"] == "COMPLIANCE"

        # the version itself cannot be deleted, not even by the root user, nor with a governance bypass
        assert await _error_code(s3.delete_object(Bucket=name, Key="kyc/doc.txt", VersionId=vid)) in (
            "AccessDenied", "InvalidRequest")
        assert await _error_code(s3.delete_object(Bucket=name, Key="kyc/doc.txt", VersionId=vid,
                                                  BypassGovernanceRetention=True)) in ("AccessDenied",
                                                                                        "InvalidRequest")
        # nor can COMPLIANCE retention be shortened
        shorter = until - timedelta(seconds=2)
        assert await _error_code(s3.put_object_retention(
            Bucket=name, Key="kyc/doc.txt", VersionId=vid,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": shorter})) in (
            "AccessDenied", "InvalidRequest", "MalformedXML")
        # a plain delete only adds a delete marker: the locked version is still readable
        marker = await s3.delete_object(Bucket=name, Key="kyc/doc.txt")
        assert marker.get("DeleteMarker") is True
        body = await (await s3.get_object(Bucket=name, Key="kyc/doc.txt", VersionId=vid))["Body"].read()
        assert body == b"kyc"

        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.5)
        await s3.delete_object(Bucket=name, Key="kyc/doc.txt", VersionId=vid)  # retention over: allowed


async def test_versioned_overwrite_keeps_the_old_version(objects, throwaway):
    name = throwaway()
    await ensure_buckets(objects, specs=[SPEC_BY_NAME["kredete-ml-artifacts"].renamed(name)])
    v1 = await objects.put(name, "models/score.bin", b"checkpoint-1")
    v2 = await objects.put(name, "models/score.bin", b"checkpoint-2")
    assert v1 and v2 and v1 != v2
    assert await objects.get(name, "models/score.bin") == b"checkpoint-2"
    assert await objects.get(name, "models/score.bin", version_id=v1) == b"checkpoint-1"
    async with objects.client() as s3:
        versions = (await s3.list_object_versions(Bucket=name, Prefix="models/"))["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([v1, v2])


async def test_sse_is_reported_on_head(objects, throwaway):
    name = throwaway()
    async with objects.client() as s3:
        await s3.create_bucket(Bucket=name)
        await s3.put_object(Bucket=name, Key="kms.txt", Body=b"a", ServerSideEncryption="aws:kms")
        await s3.put_object(Bucket=name, Key="s3.txt", Body=b"b", ServerSideEncryption="AES256")
        await s3.put_object(Bucket=name, Key="plain.txt", Body=b"c")
        kms = await s3.head_object(Bucket=name, Key="kms.txt")
        assert kms["ServerSideEncryption"] == "aws:kms"
        assert kms["SSEKMSKeyId"].endswith(LOCAL_KMS_KEY_ID)
        assert (await s3.head_object(Bucket=name, Key="s3.txt"))["ServerSideEncryption"] == "AES256"
        assert "ServerSideEncryption" not in await s3.head_object(Bucket=name, Key="plain.txt")
        assert await _error_code(s3.put_object(Bucket=name, Key="x.txt", Body=b"x", ServerSideEncryption="aws:kms",
                                               SSEKMSKeyId="no-such-key")) == "kms:KeyNotFound"
    # bucket default encryption from the spec: a put without SSE headers is encrypted with the KMS key
    await ensure_buckets(objects, specs=[SPEC_BY_NAME["kredete-static-assets"].renamed(name)])
    await objects.put(name, "default.txt", b"d", content_type="text/plain")
    async with objects.client() as s3:
        head = await s3.head_object(Bucket=name, Key="default.txt")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith(LOCAL_KMS_KEY_ID)
    assert await objects.get(name, "default.txt") == b"d"


# --- access: policy, anonymous, presigned URLs ------------------------------------------------------------

async def test_presigned_url_works_within_ttl_and_expires(objects, throwaway, s3_settings):
    name = throwaway()
    await ensure_buckets(objects, specs=[SPEC_BY_NAME["kredete-static-assets"].renamed(name)])
    await objects.put(name, "letter.txt", b"hello", content_type="text/plain")
    url = objects.presigned_get(name, "letter.txt")
    assert "X-Amz-Expires=900" in url  # 15 minutes by default
    assert "X-Amz-Expires=3600" in objects.presigned_get(name, "letter.txt", ttl_s=10_000)  # capped at 1 h
    short = objects.presigned_get(name, "letter.txt", ttl_s=1)
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=s3_settings.s3_ca_file)) as http:
        ok = await http.get(url)
        assert ok.status_code == 200 and ok.content == b"hello"
        await asyncio.sleep(2.2)
        expired = await http.get(short)
        assert expired.status_code == 403
        assert b"expired" in expired.content.lower()
        assert (await http.get(url)).status_code == 200


# --- seeded documents and S3 ingestion ----------------------------------------------------------------------

async def test_seed_documents_then_s3_source_ingests_text_and_skips_binaries(objects, throwaway, s3_settings):
    from kredete.seed.documents import CONTENT_TYPE, documents_for, seed_documents
    from kredete.seed.people import person
    from retrieval.sources import S3Source
    from stores.crypto import FieldCipher
    from stores.objects.sealed import SEALED_CONTENT_TYPE, open_sealed

    name = throwaway("docs-")
    # the documents spec without object lock, so the throwaway bucket can be removed afterwards
    spec = replace(SPEC_BY_NAME["kredete-documents"], object_lock=False, retention_days=None).renamed(name)
    await ensure_buckets(objects, specs=[spec])
    people = [person(7, i) for i in range(24)]
    expected = {d.key: d for d in documents_for(people, 7)}
    assert {d.doc_type for d in expected.values()} == {"kyc_summary", "dispute_letter", "compliance_report"}
    quiet = Console(file=io.StringIO())

    written = await seed_documents(s3_settings, people, 7, quiet, bucket=name, objects=objects)
    assert written == len(expected) > 0
    assert await seed_documents(s3_settings, people, 7, quiet, bucket=name, objects=objects) == 0  # idempotent
    assert documents_for(people, 7) == list(expected.values())  # deterministic

    some = next(iter(expected.values()))
    async with objects.client() as s3:
        head = await s3.head_object(Bucket=name, Key=some.key)
        assert head["ServerSideEncryption"] == "aws:kms"
        # sealed under the owner's data key (dsr area: crypto-shredding), the plaintext's type in the metadata
        assert head["ContentType"] == SEALED_CONTENT_TYPE and head["Metadata"]["plain-type"] == CONTENT_TYPE
        assert head["Metadata"]["user-id"] == some.user_id and head["Metadata"]["sealed"] == "enc2"
        body = await (await s3.get_object(Bucket=name, Key=some.key))["Body"].read()
        assert some.text.encode() not in body
        versions = (await s3.list_object_versions(Bucket=name))["Versions"]
        assert len(versions) == len(expected)  # the re-run wrote no new versions
        binary_key = f"users/{some.user_id}/kyc/passport-scan.jpg"
        await s3.put_object(Bucket=name, Key=binary_key, Body=b"\xff\xd8\xff\xe0" + bytes(64),
                            ContentType="image/jpeg", Metadata={"user-id": some.user_id})

    cipher = FieldCipher.from_settings(s3_settings)

    def unseal(key: str, blob: bytes, meta: dict[str, str]) -> bytes:
        return open_sealed(cipher, key, blob, meta)

    records = [r async for r in S3Source(objects, bucket=name, unseal=unseal).records()]
    by_key = {r.key: r for r in records}
    assert set(by_key) == set(expected) | {binary_key}
    assert [r.key for r in records] == sorted(by_key)
    for key, doc in expected.items():
        (src,) = by_key[key].docs
        assert by_key[key].error is None
        assert src.user_id == doc.user_id and src.text == doc.text and src.title == doc.title
        assert src.doc_type == "document" and src.visibility == "private"
    users = {str(p.user_id): p for p in people}
    kyc = next(d for d in expected.values() if d.doc_type == "kyc_summary")
    p = users[kyc.user_id]
    assert p.full_name in kyc.text and p.phone in kyc.text  # PII on purpose
    assert all(v in kyc.text for v in p.national_ids.values())
    skipped = by_key[binary_key]
    assert skipped.docs == [] and skipped.error is not None
    assert skipped.error.reason == "not text (image/jpeg)"

    after = sorted(expected)[len(expected) // 2]
    resumed = [r.key async for r in S3Source(objects, bucket=name, unseal=unseal).records(after=after)]
    assert resumed == [k for k in sorted(by_key) if k > after]

    # With the owners' names (as `kredete ingest` looks them up), the stored chunk text carries no PII.
    async def owner_names(user_id: str) -> list[str]:
        return [users[user_id].full_name]

    from guards.redaction import redact
    from retrieval.redactor import text_redactor

    named = [r async for r in S3Source(objects, bucket=name, owner_names=owner_names, unseal=unseal).records()]
    doc = next(d for r in named for d in r.docs if d.source_id == kyc.key.replace("#", "%23"))
    assert doc.known_names == (p.full_name,)
    clean = text_redactor(redact)(doc.text, doc.known_names)
    leaked = [v for v in (p.full_name, p.phone, *p.national_ids.values()) if v in clean]
    assert not leaked, leaked
