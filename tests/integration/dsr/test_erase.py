"""`kredete dsr erase` on a user with data in all five stores, on the real servers.

Before: raw scans find the user in every store. After: nothing readable anywhere (ids only in the records kept by
policy, pseudonymised), blind indexes no longer match, S3 versions (primary and DR) do not open, the data key is
gone, the receipt sits in the logs archive under a COMPLIANCE lock without personal data; every other user is
untouched, the ledger still balances and the audit chain still verifies. A second run changes nothing.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.dsr.conftest import REASON, run_cli


async def _counts(svc, user_ids: list[str]) -> dict[str, object]:
    """What the other users hold, per store (to prove an erasure leaves them alone)."""
    from stores.objects.buckets import documents_bucket
    from stores.objects.privacy import versions
    from stores.search.erasure import indices

    out: dict[str, object] = {}
    async with svc.postgres.connection() as conn:
        for table in ("users", "transactions", "kyc_records", "sessions", "payment_methods", "wallets"):
            col = "id" if table == "users" else "user_id"
            out[table] = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {col} = ANY($1::uuid[])",
                                             user_ids)
        out["pii_rows"] = await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1::uuid[]) AND "
                                              "email_enc IS NOT NULL", user_ids)
        out["tx_text"] = await conn.fetchval("SELECT count(*) FROM transactions WHERE user_id = ANY($1::uuid[]) "
                                             "AND description IS NOT NULL", user_ids)
    for coll in await svc.mongo.db.list_collection_names():
        out[f"mongo.{coll}"] = await svc.mongo.db[coll].count_documents({"user_id": {"$in": user_ids}})
    for index in await indices(svc.search):
        await svc.search.os.indices.refresh(index=index)
        out[f"os.{index}"] = (await svc.search.os.count(index=index, body={
            "query": {"terms": {"user_id": user_ids}}}))["count"] if "ingest-state" not in index else None
    keys = [k async for k in svc.cache.redis.scan_iter(count=1000)]
    out["redis.keys"] = sorted(k for k in keys if any(u in k for u in user_ids))
    bucket = documents_bucket(svc.settings.s3_bucket_prefix)
    out["s3.versions"] = sum([len(await versions(svc.documents, bucket, f"users/{u}/")) for u in user_ids])
    return out


async def test_erase_removes_the_user_everywhere_and_leaves_the_others(dsr_data, privacy):
    from stores.crypto import FieldCipher
    from stores.keys import KeyDestroyed
    from stores.objects.buckets import documents_bucket, logs_bucket
    from stores.objects.privacy import lock_of, versions
    from stores.objects.sealed import open_sealed
    from stores.postgres import UserRepository

    user = dsr_data.with_documents[0]
    others = [u for u in dsr_data.user_ids if u != user]
    person = dsr_data.people[user]

    before = await privacy.verify(user)
    by_store = {s.store: s for s in before.stores}
    assert not before.passed
    for name in ("postgres", "credit_store", "redis", "opensearch", "s3", "keystore"):
        assert by_store[name].hits > 0, f"{name}: the seeded user must be found before the erasure"
    others_before = await _counts(privacy, others)

    done = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON, "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    assert result["status"] == "erased"
    for step in ("capture", "postgres", "credit_store", "redis", "opensearch", "s3", "key", "receipt"):
        assert f"done {step}" in done.stderr

    after = await privacy.verify(user)
    assert after.passed, [(s.store, s.hits, s.details, s.error) for s in after.stores if s.hits or s.error]
    assert after.erased and after.fingerprint_source.startswith("captured at erasure")
    pg = next(s for s in after.stores if s.store == "postgres")
    assert set(pg.details["kept_by_policy"]) <= {"users", "transactions", "wallets", "fx_orders", "subscriptions",
                                                 "payment_methods", "audit_logs", "dsr_requests", "refunds",
                                                 "stablecoin_transfers", "corridor_day_users"}

    # blind indexes no longer match; the row is pseudonymised
    cipher = FieldCipher.from_settings(dsr_data.settings)
    users = UserRepository(privacy.postgres, cipher=cipher, replica_reads=False)
    assert await users.find_by_email(person.email) is None
    assert await users.find_by_phone(person.phone) is None
    async with privacy.postgres.connection() as conn:
        row = await conn.fetchrow("SELECT status::text, deleted_at, full_name_enc, email_bidx FROM users WHERE id = $1",
                                  uuid.UUID(user))
        assert (row["status"], row["full_name_enc"], row["email_bidx"]) == ("closed", None, None)
        assert row["deleted_at"] is not None
        assert await conn.fetchval("SELECT count(*) FROM transactions WHERE user_id = $1 AND (description IS NOT "
                                   "NULL OR memo IS NOT NULL OR counterparty_name IS NOT NULL)", uuid.UUID(user)) == 0
        assert await conn.fetchval("SELECT count(*) FROM transactions WHERE user_id = $1", uuid.UUID(user)) > 0

    # the user's conversation claim is gone with everything logged under it, the others' stay, and the
    # support agent's trace that named the user is gone
    assert await privacy.mongo.db.conversation_owners.count_documents({"_id": f"conv-{user}"}) == 0
    assert await privacy.mongo.db.conversation_owners.count_documents({"_id": f"conv-{others[0]}"}) == 1
    assert await privacy.mongo.db.trace_observations.count_documents({"trace_id": f"agent-trace-{user}"}) == 0
    assert await privacy.mongo.db.trace_observations.count_documents({"trace_id": f"agent-trace-{others[0]}"}) == 1

    # every S3 version, on the primary and the DR replica, is still there and does not open
    bucket = documents_bucket(dsr_data.settings.s3_bucket_prefix)
    for endpoint in (None, dsr_data.settings.s3_dr_url):
        found = await versions(privacy.documents, bucket, f"users/{user}/", endpoint=endpoint)
        assert found
        for v in found:
            async with privacy.documents.client(endpoint=endpoint) as s3:
                res = await s3.get_object(Bucket=bucket, Key=v.key, VersionId=v.version_id)
                body, meta = await res["Body"].read(), res["Metadata"]
            assert person.full_name.encode() not in body
            with pytest.raises(KeyDestroyed):
                open_sealed(cipher, v.key, body, meta)

    # the receipt: locked, and no personal value of the user in it
    receipt = result["receipt"]
    lock = await lock_of(privacy.auditor, logs_bucket(dsr_data.settings.s3_bucket_prefix), receipt["key"],
                         receipt["version_id"])
    assert lock["mode"] == "COMPLIANCE"
    text = (await privacy.auditor.get(receipt["bucket"], receipt["key"])).decode()
    fps = privacy.keys.fingerprints([user])[user]
    assert not privacy.fingerprinter.matcher(fps).kinds(text)
    assert person.email not in text and person.full_name not in text and person.phone not in text
    assert REASON not in text  # the ticket only, never the free-text purpose

    # the others are untouched, in every store
    assert await _counts(privacy, others) == others_before
    other_doc = next(u for u in dsr_data.with_documents if u != user)
    key = (await privacy.documents.list_keys(bucket, f"users/{other_doc}/"))[0]
    head = await privacy.documents.head(bucket, key)
    assert dsr_data.people[other_doc].full_name.encode() in open_sealed(
        cipher, key, await privacy.documents.get(bucket, key), head["Metadata"])


async def test_ledger_balances_and_the_audit_chain_verifies_after_erasures(dsr_data, privacy):
    from stores.postgres import AuditRepository, WalletRepository

    erased = [u for u in dsr_data.with_documents[:1]]
    assert (await privacy.repo.last_erasure(uuid.UUID(erased[0]))).status == "done"
    assert await WalletRepository(privacy.postgres, replica_reads=False).mismatch_count() == 0
    report = await AuditRepository(privacy.postgres).verify_chain()
    assert report.ok, report
    check = run_cli(dsr_data.env, "db", "check-balances")
    assert check.returncode == 0, check.stdout + check.stderr
    chain = run_cli(dsr_data.env, "db", "verify-audit")
    assert chain.returncode == 0, chain.stdout + chain.stderr


async def test_erasing_twice_is_a_no_op(dsr_data, privacy):
    user = dsr_data.with_documents[0]
    bucket_before = await _counts(privacy, [user])
    receipts_before = await privacy.auditor.list_keys(f"{dsr_data.settings.s3_bucket_prefix}-logs-archive",
                                                      "dsr/receipts/", limit=100_000)
    again = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON, "--json")
    assert again.returncode == 0, again.stderr
    (result,) = json.loads(again.stdout)
    assert result["status"] == "already_erased"
    assert "done " not in again.stderr  # no step ran
    assert await _counts(privacy, [user]) == bucket_before
    assert await privacy.auditor.list_keys(f"{dsr_data.settings.s3_bucket_prefix}-logs-archive", "dsr/receipts/",
                                           limit=100_000) == receipts_before
