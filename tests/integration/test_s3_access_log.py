"""S3 access logging on the real stack: MinIO's audit log -> the receiver -> batches in logs-archive ->
`kredete s3 access-log`; presigned downloads recorded; the receiver down loses nothing; presigned links of
the document service refused after expiry or for another key."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stores.objects.access_log import AccessLogArchive, AccessRecord
from stores.objects.buckets import bucket_of, logs_bucket
from stores.objects.principals import credentials, objects_for

DOCS = bucket_of("documents")


@pytest.fixture
async def docs(s3_ready, s3_settings):
    o = objects_for(s3_settings, "documents")
    yield o
    await o.close()


@pytest.fixture
async def archive(s3_ready, s3_settings):
    o = objects_for(s3_settings, "auditor")
    yield AccessLogArchive(o, logs_bucket())
    await o.close()


@pytest.fixture
def http(s3_settings):
    return httpx.AsyncClient(verify=ssl.create_default_context(cafile=s3_settings.s3_ca_file))


async def _records(archive: AccessLogArchive, since: datetime, keys: set[str], *, want: int,
                   timeout: float = 30.0, until=None) -> list[AccessRecord]:
    """Poll the archive until at least `want` records about `keys` are there (and `until(records)` holds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [r for r in await archive.read(DOCS, since) if r.key in keys]
        done = len(found) >= want and (until is None or until(found))
        if done or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(1)


async def test_every_access_is_recorded_with_who_what_when_where_result(docs, archive, http, s3_settings):
    since = datetime.now(UTC) - timedelta(seconds=1)
    key = f"users/{uuid.uuid4()}/kyc/kyc-summary.txt"
    await docs.put(DOCS, key, b"kyc", content_type="text/plain")
    assert await docs.get(DOCS, key) == b"kyc"
    url = docs.presigned_get(DOCS, key)
    assert (await http.get(url)).content == b"kyc"
    ingestion = objects_for(s3_settings, "ingestion")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the ingestion reader may not write
            await ingestion.put(DOCS, key, b"overwrite")
    finally:
        await ingestion.close()

    replicator = credentials(s3_settings, "replicator")[0]
    everywhere = await _records(archive, since, {key}, want=5, until=lambda rs: any(r.site == "dr" for r in rs))
    # the DR region logs too: there the replication worker wrote the object
    assert any(r.site == "dr" and r.api == "PutObject" and r.principal == replicator for r in everywhere)
    records = [r for r in everywhere if r.site == "primary"]
    by_api = [(r.api, r.principal, r.status_code, r.presigned) for r in records]
    documents_user = credentials(s3_settings, "documents")[0]
    assert ("PutObject", documents_user, 200, False) in by_api
    assert ("GetObject", documents_user, 200, False) in by_api
    assert ("GetObject", documents_user, 200, True) in by_api, "the presigned download is recorded"
    denied = [r for r in records if r.principal == credentials(s3_settings, "ingestion")[0]]
    assert [(r.api, r.status_code, r.result) for r in denied] == [("PutObject", 403, denied[0].result)]
    assert denied[0].result == "Forbidden"  # MinIO records the HTTP reason for an authorization refusal
    for r in records:
        assert r.remote_ip == "127.0.0.1" and r.request_id
        assert since <= r.time <= datetime.now(UTC)
    put = next(r for r in records if r.api == "PutObject" and r.status_code == 200)
    assert put.version_id, "the version written is recorded"

    # the archive objects: batches under s3-access/<bucket>/<date>/, SSE-KMS, read back by the CLI
    root = objects_for(s3_settings, "auditor")
    try:
        keys = await root.list_keys(logs_bucket(), f"s3-access/{DOCS}/{since:%Y/%m/%d}/")
        assert keys and all(k.endswith(".ndjson.gz") for k in keys)
        head = await root.head(logs_bucket(), keys[-1])
        assert head["ServerSideEncryption"] == "aws:kms"
    finally:
        await root.close()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "kredete"), "s3", "access-log", "--bucket", DOCS, "--since",
        since.isoformat(), "--key", key, "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, errs = await proc.communicate()
    assert proc.returncode == 0, errs.decode()
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert {x["key"] for x in lines} == {key} and len(lines) >= 5
    assert any(x["presigned"] for x in lines)


async def test_archive_lives_under_the_365_day_rule(s3_ready):
    logs = next(b for b in s3_ready.buckets if b.name == logs_bucket())
    assert any(rule.startswith("expire-logs") and "expire 365d" in rule for rule in logs.lifecycle)


async def test_receiver_down_nothing_is_lost(docs, archive, s3_settings):
    """Stop the receiver for real; MinIO queues the audit entries on disk; start it again: all arrive."""
    from kredete.stack.minio import AccessLogReceiver, MinioServer

    receiver = AccessLogReceiver()
    queue = MinioServer().data_dir / "audit-queue"
    since = datetime.now(UTC) - timedelta(seconds=1)
    prefix = f"users/{uuid.uuid4()}/outage/"
    keys = {f"{prefix}{i:02d}.txt" for i in range(12)}
    receiver.stop()
    try:
        assert not receiver.healthy()
        for k in sorted(keys):
            await docs.put(DOCS, k, b"x", content_type="text/plain")
        await asyncio.sleep(3)  # MinIO's batch interval, then the failed send
        queued = [p for p in queue.rglob("*") if p.is_file()]
        assert queued, "MinIO keeps the undelivered entries in its on-disk queue"
        assert await archive.read(DOCS, since) == [] or not [
            r for r in await archive.read(DOCS, since) if r.key in keys]
    finally:
        receiver.start()
    records = await _records(archive, since, keys, want=len(keys), timeout=60,
                             until=lambda rs: len({r.key for r in rs if r.site == "primary"}) == len(keys))
    assert sorted(r.key for r in records if r.api == "PutObject" and r.site == "primary") == sorted(keys)


# --- presigned links through the document service ---------------------------------------------------------

@pytest.fixture
async def service(s3_ready, s3_settings):
    from services.documents import DocumentService

    svc = DocumentService.from_settings(s3_settings)
    yield svc
    await svc.close()


async def test_document_link_is_scoped_expires_and_is_bound_to_its_key(service, docs, http, monkeypatch):
    from services.documents import DocumentNotFound

    alice, bob = uuid.uuid4(), uuid.uuid4()
    for user, text in ((alice, b"alice's letter"), (bob, b"bob's letter")):
        await docs.put(DOCS, f"users/{user}/disputes/letter.txt", text, content_type="text/plain",
                       metadata={"user-id": str(user), "title": "Dispute letter"})
    link = await service.link(alice, "disputes/letter.txt")
    assert "X-Amz-Expires=900" in link.url and link.size_bytes == len(b"alice's letter")
    assert timedelta(minutes=14) < link.expires_at - datetime.now(UTC) <= timedelta(minutes=15)
    assert (await http.get(link.url)).content == b"alice's letter"
    assert list(await service.list_documents(alice)) == ["disputes/letter.txt"]

    # another key with the same signature: refused
    other = link.url.replace(f"users/{alice}/", f"users/{bob}/")
    refused = await http.get(other)
    assert refused.status_code == 403 and b"SignatureDoesNotMatch" in refused.content
    # nothing outside the user's own prefix, whatever the id says
    for bad in ("../" + str(bob) + "/disputes/letter.txt", f"/users/{bob}/disputes/letter.txt", "disputes/nope.txt",
                "disputes", ""):
        with pytest.raises(DocumentNotFound):
            await service.link(alice, bad)
    # an object under alice's prefix whose owner metadata names bob is not handed out either
    await docs.put(DOCS, f"users/{alice}/disputes/misfiled.txt", b"bob's", content_type="text/plain",
                   metadata={"user-id": str(bob)})
    with pytest.raises(DocumentNotFound):
        await service.link(alice, "disputes/misfiled.txt")

    # after expiry: refused
    service.ttl_s = 1
    short = await service.link(alice, "disputes/letter.txt")
    await asyncio.sleep(2.2)
    expired = await http.get(short.url)
    assert expired.status_code == 403 and b"expired" in expired.content.lower()


def test_document_ids_are_one_folder_under_the_user():
    from services.documents import DOCUMENT_ID

    assert DOCUMENT_ID.fullmatch("kyc/kyc-summary.txt") and DOCUMENT_ID.fullmatch("compliance/review-2026-Q1.txt")
    for bad in ("../x/y", "a/b/c", "/a/b", "a/.hidden", "A/b", "a b/c"):
        assert not DOCUMENT_ID.fullmatch(bad), bad


def test_queue_dir_is_configured(s3_settings):
    from kredete.stack.minio import AUDIT_TARGET, MinioServer

    _argv, env = MinioServer().command()
    assert Path(env[f"MINIO_AUDIT_WEBHOOK_QUEUE_DIR_{AUDIT_TARGET}"]).name == "audit-queue"
    assert env[f"MINIO_AUDIT_WEBHOOK_AUTH_TOKEN_{AUDIT_TARGET}"].startswith("Bearer ")
    assert secrets.compare_digest(env[f"MINIO_AUDIT_WEBHOOK_AUTH_TOKEN_{AUDIT_TARGET}"][7:],
                                  s3_settings.s3_audit_token.get_secret_value())
