"""The `archiver` principal (audit archives, deletion receipts) on the real MinIO: it puts locked records under
`audit/` and `dsr/` only, never deletes, cannot shorten a COMPLIANCE lock, and reads nothing else; the auditor
reads the records back. The logs archive itself is object-locked."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from stores.objects.buckets import logs_bucket
from stores.objects.principals import objects_for
from stores.objects.privacy import lock_of, put_record


@pytest.fixture
async def principals(s3_ready, s3_settings):
    made = {p: objects_for(s3_settings, p) for p in ("archiver", "auditor", "log_shipper", "documents")}
    yield made
    for o in made.values():
        await o.close()


async def _refused(coro) -> None:
    with pytest.raises(ClientError) as exc:
        await coro
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


async def test_archiver_puts_locked_records_and_nothing_else(principals, s3_ready):
    archiver, auditor = principals["archiver"], principals["auditor"]
    bucket = logs_bucket()
    logs = next(b for b in s3_ready.buckets if b.name == bucket)
    assert (logs.lock_enabled, logs.lock_mode, logs.retention_days) == (True, "COMPLIANCE", 365)

    key = f"dsr/receipts/test/{secrets.token_hex(6)}.json"
    version = await put_record(archiver, bucket, key, b'{"kind": "test"}', days=1)
    lock = await lock_of(auditor, bucket, key, version)
    assert lock["mode"] == "COMPLIANCE" and lock["retain_until"] > datetime.now(UTC) + timedelta(hours=23)
    assert await auditor.get(bucket, key) == b'{"kind": "test"}'

    async with archiver.client() as s3:
        # a COMPLIANCE lock cannot be shortened, and the version cannot be deleted, by the archiver or anyone
        with pytest.raises(ClientError):
            await s3.put_object_retention(Bucket=bucket, Key=key, VersionId=version, Retention={
                "Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(minutes=5)})
        await _refused(s3.delete_object(Bucket=bucket, Key=key, VersionId=version))
        await _refused(s3.delete_object(Bucket=bucket, Key=key))
        await _refused(s3.put_object(Bucket=bucket, Key="s3-access/forged.ndjson.gz", Body=b"x",
                                     ServerSideEncryption="aws:kms"))
        await _refused(s3.put_object(Bucket=bucket, Key="audit/x.json", Body=b"x"))  # without SSE
    await _refused(archiver.get(f"{bucket.removesuffix('-logs-archive')}-documents", "users/u/x.txt"))
    await _refused(principals["log_shipper"].get(bucket, key))  # the shipper still only appends
