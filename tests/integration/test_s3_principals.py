"""Least privilege on the real MinIO: each principal does its job and is refused outside its grant; puts
without SSE and requests over plain HTTP are refused; a policy MinIO rejects stops `kredete s3 setup`."""

from __future__ import annotations

import json
import secrets
import ssl

import httpx
import pytest
from typer.testing import CliRunner

from stores.errors import StoreConfigError, StoreError
from stores.objects.buckets import bucket_of
from stores.objects.client import S3Refused
from stores.objects.principals import PRINCIPALS, credentials, objects_for


@pytest.fixture
async def as_(s3_ready, s3_settings):
    """Factory of ObjectStores acting as a principal; closed after the test."""
    made = []

    def make(principal: str):
        made.append(objects_for(s3_settings, principal))
        return made[-1]

    yield make
    for o in made:
        await o.close()


B = {k: bucket_of(k) for k in ("documents", "ml-artifacts", "backups", "logs-archive", "static-assets")}


async def _refused(coro) -> None:
    """Refused with AccessDenied (a typed S3Refused from the adapter's helpers, a ClientError from a raw call)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as exc:
        await coro
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


async def _put(objects, bucket: str, key: str, *, sse: str | None = "aws:kms") -> str | None:
    return await objects.put(bucket, key, b"payload " + key.encode(), content_type="text/plain", sse=sse)


async def _delete(objects, bucket: str, key: str, version_id: str | None = None) -> None:
    kw = {"VersionId": version_id} if version_id else {}
    async with objects.client() as s3:
        await s3.delete_object(Bucket=bucket, Key=key, **kw)


async def test_no_service_principal_is_the_root_user(s3_settings):
    root = s3_settings.s3_access_key.get_secret_value()
    keys = [credentials(s3_settings, p)[0] for p in PRINCIPALS]
    assert root not in keys and len(set(keys)) == len(keys) == 9


async def test_documents_service_reads_and_writes_documents_only(as_):
    docs = as_("documents")
    key = f"users/{secrets.token_hex(4)}/kyc/letter.txt"
    vid = await _put(docs, B["documents"], key)
    assert vid and await docs.get(B["documents"], key) == b"payload " + key.encode()
    assert key in await docs.list_keys(B["documents"], key.rsplit("/", 1)[0])
    await _refused(_delete(docs, B["documents"], key))
    await _refused(_delete(docs, B["documents"], key, vid))
    for other in ("ml-artifacts", "backups", "logs-archive", "static-assets"):
        await _refused(docs.list_keys(B[other]))
        await _refused(_put(docs, B[other], "x.txt"))


async def test_puts_without_sse_or_with_another_algorithm_are_refused(as_, s3_ready):
    docs, shipper = as_("documents"), as_("log_shipper")
    await _refused(_put(docs, B["documents"], "users/u/plain.txt", sse=None))
    await _refused(_put(docs, B["documents"], "users/u/sse-s3.txt", sse="AES256"))
    await _refused(_put(shipper, B["logs-archive"], "s3-access/x/plain.ndjson.gz", sse=None))
    # multipart writers (pgBackRest, checkpoints) rely on the bucket default: what they write is SSE-KMS
    ml = as_("ml_pipeline")
    await _put(ml, B["ml-artifacts"], "models/plain-put.bin", sse=None)
    assert (await ml.head(B["ml-artifacts"], "models/plain-put.bin"))["ServerSideEncryption"] == "aws:kms"


async def test_ingestion_reader_only_reads_documents(as_):
    docs, reader = as_("documents"), as_("ingestion")
    key = f"users/{secrets.token_hex(4)}/doc.txt"
    await _put(docs, B["documents"], key)
    assert await reader.get(B["documents"], key) == b"payload " + key.encode()
    await _refused(_put(reader, B["documents"], key))
    await _refused(_delete(reader, B["documents"], key))
    await _refused(reader.list_keys(B["ml-artifacts"]))


async def test_backup_writer_writes_but_never_deletes_inside_the_lock(as_):
    bw = as_("backup_writer")
    key = f"pgbackrest/{secrets.token_hex(4)}/backup.info"
    vid = await _put(bw, B["backups"], key)
    assert await bw.get(B["backups"], key) == b"payload " + key.encode()
    await _delete(bw, B["backups"], key)  # a delete marker (pgBackRest's expire): allowed
    await _refused(_delete(bw, B["backups"], key, vid))  # the version: denied by the policy itself
    assert await bw.get(B["backups"], key, version_id=vid) == b"payload " + key.encode()
    async with bw.client() as s3:
        await _refused(s3.delete_bucket_policy(Bucket=B["backups"]))
        await _refused(s3.delete_bucket_lifecycle(Bucket=B["backups"]))
    await _refused(bw.list_keys(B["documents"]))


async def test_log_shipper_appends_and_auditor_reads(as_):
    shipper, auditor = as_("log_shipper"), as_("auditor")
    key = f"s3-access/t-{secrets.token_hex(4)}/probe.ndjson.gz"
    await _put(shipper, B["logs-archive"], key)
    await _refused(shipper.get(B["logs-archive"], key))
    await _refused(_delete(shipper, B["logs-archive"], key))
    await _refused(_put(shipper, B["documents"], "users/u/x.txt"))
    assert await auditor.get(B["logs-archive"], key) == b"payload " + key.encode()
    await _refused(_put(auditor, B["logs-archive"], key))
    await _refused(auditor.get(B["documents"], "users/u/x.txt"))


async def test_ml_pipeline_owns_ml_artifacts_only(as_):
    ml = as_("ml_pipeline")
    key = f"models/{secrets.token_hex(4)}.bin"
    vid = await _put(ml, B["ml-artifacts"], key)
    await _delete(ml, B["ml-artifacts"], key)  # a delete marker: allowed
    await _refused(_delete(ml, B["ml-artifacts"], key, vid))  # old versions go by the lifecycle rule only
    await _refused(ml.list_keys(B["documents"]))
    await _refused(ml.get(B["backups"], "anything"))


async def test_replicator_and_tier_users_have_no_business_on_the_primary(as_):
    for name in ("replicator", "tier"):
        o = as_(name)
        with pytest.raises(StoreConfigError):  # they do not even exist there
            await o.list_keys(B["documents"])


# --- insecure transport: a plain-HTTP MinIO with the same policies ----------------------------------------

@pytest.fixture
def plain_minio(tmp_path, s3_settings):
    from evals.harness import free_port
    from kredete.stack.minio import MinioServer

    class PlainMinio(MinioServer):
        name = "s3-plain-test"
        port = free_port()
        console_port = free_port()
        tls = False
        audit = False

    server = PlainMinio()
    server.data_dir = tmp_path / "minio"
    server.start()
    yield server
    server.stop()


async def test_insecure_transport_is_refused_to_every_principal_and_anonymous(plain_minio, s3_settings):
    from stores.objects.admin import MinioAdmin
    from stores.objects.buckets import SPEC_BY_NAME, ensure_buckets
    from stores.objects.client import ObjectStore
    from stores.objects.setup import apply_principals

    url = plain_minio.url()
    root_key, root_secret = s3_settings.s3_access_key.get_secret_value(), s3_settings.s3_secret_key.get_secret_value()
    root = ObjectStore(url, root_key, root_secret)
    admin = MinioAdmin(url, root_key, root_secret)
    try:
        await ensure_buckets(root, specs=[SPEC_BY_NAME["kredete-documents"]], retention_days=1)
        await apply_principals(admin, "primary", PRINCIPALS.values(), s3_settings, "kredete")
        await root.put(B["documents"], "users/u/a.txt", b"a")  # root is the owner: no policy binds it
        for name in ("documents", "ingestion"):
            key, secret = credentials(s3_settings, name)
            o = ObjectStore(url, key, secret)
            try:
                await _refused(o.get(B["documents"], "users/u/a.txt"))
                await _refused(o.list_keys(B["documents"]))
            finally:
                await o.close()
        # anonymous: even an explicit Allow in the bucket policy loses to its DenyInsecureTransport
        allow = {"Sid": "AllowAnonymousRead", "Effect": "Allow", "Principal": {"AWS": ["*"]},
                 "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{B['documents']}/*"]}
        async with root.client() as s3, httpx.AsyncClient() as http:
            policy = SPEC_BY_NAME["kredete-documents"].policy()
            await s3.put_bucket_policy(Bucket=B["documents"], Policy=json.dumps(
                {"Version": "2012-10-17", "Statement": [allow]}))
            assert (await http.get(f"{url}/{B['documents']}/users/u/a.txt")).status_code == 200  # control
            policy["Statement"].append(allow)
            await s3.put_bucket_policy(Bucket=B["documents"], Policy=json.dumps(policy))
            assert (await http.get(f"{url}/{B['documents']}/users/u/a.txt")).status_code == 403
    finally:
        await root.close()
        await admin.close()


async def test_the_same_principal_over_tls_is_served(as_, s3_settings):
    """Control for the test above: over TLS the documents principal reads; anonymous stays refused."""
    docs = as_("documents")
    await _put(docs, B["documents"], "users/u/tls.txt")
    assert await docs.get(B["documents"], "users/u/tls.txt")
    ctx = ssl.create_default_context(cafile=s3_settings.s3_ca_file)
    async with httpx.AsyncClient(verify=ctx) as http:
        assert (await http.get(f"{s3_settings.s3_url}/{B['documents']}/users/u/tls.txt")).status_code == 403


# --- a policy MinIO rejects stops `kredete s3 setup` ---------------------------------------------------

def test_setup_stops_with_the_reason_when_a_policy_does_not_apply(s3_ready, monkeypatch):
    from dataclasses import replace

    from kredete.cli import app
    from stores.objects import principals, setup

    def broken(prefix: str) -> dict:
        return {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::*/*"],
             "Condition": {"NoSuchOperator": {"aws:SecureTransport": ["true"]}}}]}

    bad = {**principals.PRINCIPALS, "auditor": replace(principals.PRINCIPALS["auditor"], policy_of=broken)}
    monkeypatch.setattr(setup, "PRINCIPALS", bad)
    result = CliRunner().invoke(app, ["s3", "setup"])
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 1, out
    assert "policy kredete-auditor: XMinioMalformedIAMPolicy" in out and "NoSuchOperator" in out, out


async def test_setup_is_idempotent_and_reports_the_principals(s3_settings, s3_ready):
    from stores.objects.setup import setup_all

    again = await setup_all(s3_settings)
    assert [(r.name, r.changed) for r in again.buckets] == [(r.name, []) for r in again.buckets]
    assert not [r.not_applied for r in again.buckets if r.not_applied]
    assert again.tiers == ["STANDARD_IA", "GLACIER"]
    assert {p.name for p in again.principals} == set(PRINCIPALS)


def test_errors_are_store_errors():
    assert issubclass(S3Refused, StoreError)


async def test_a_second_bucket_prefix_on_the_same_server_does_not_lock_the_first_out(as_, s3_settings):
    """Datasets with other bucket prefixes (a test's, a bench's) share the server's users: applying a second
    prefix's policies adds to what the user holds instead of replacing it."""
    from stores.objects.setup import _admin, apply_principals

    admin = _admin(s3_settings, s3_settings.s3_url or "")
    try:
        other = f"kredete-p{secrets.token_hex(3)}"
        await apply_principals(admin, "primary", [PRINCIPALS["documents"]], s3_settings, other)
        key = credentials(s3_settings, "documents")[0]
        attached = ((await admin.user_info(key)) or {}).get("policyName", "").split(",")
        assert key in attached and f"{key}-{other}" in attached, attached
        # a second application is a no-op, not a duplicate attachment
        await apply_principals(admin, "primary", [PRINCIPALS["documents"]], s3_settings, other)
        assert ((await admin.user_info(key)) or {}).get("policyName", "").split(",") == attached
    finally:
        await admin.close()
    docs = as_("documents")
    name = f"users/{secrets.token_hex(4)}/kyc/after-second-prefix.txt"
    assert await _put(docs, B["documents"], name)
    assert await docs.get(B["documents"], name) == b"payload " + name.encode()
