"""A backup taken before an erasure and restored afterwards cannot reveal the user's personal data.

The backup: `pg_dump` of the payments database and a BSON dump of the credit store (the backups engineer's
`kredete backup`/`restore` - pgBackRest of the whole cluster - is not on main yet; these stand in for it: a
restore brings back the same rows and documents). Key store and logs archive are, by design, not in it.

After the restore, every value that was encrypted (names, emails, phones, dates of birth, addresses, identity
and account numbers in PostgreSQL and the credit store) is ciphertext whose key is destroyed: it does not
decrypt. What was never encrypted (pseudonymisation targets: transaction free text, the credit reports'
identity block) is re-erased by `kredete dsr reapply` from the locked receipts, which a restore runs before the
data serves: then raw scans of the restored stores find nothing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest

from tests.integration.dsr.conftest import REASON, run_cli


def _pg(tool: str, *args: str) -> None:
    """Run a PostgreSQL client tool (pg_dump, pg_restore, dropdb, createdb) of the stack's version."""
    from kredete.stack.postgres import PG_BIN

    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True)


async def _dump_mongo(settings) -> dict[str, list[bytes]]:
    import bson

    from stores.mongo import MongoStore

    store = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    try:
        return {name: [bson.encode(d) async for d in store.db[name].find({})]
                for name in await store.db.list_collection_names()}
    finally:
        await store.close()


async def _restore_mongo(settings, dump: dict[str, list[bytes]]) -> None:
    import bson

    from stores.mongo import MongoStore

    store = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    try:
        await store.client.drop_database(settings.mongo_db)
        for name, docs in dump.items():
            if docs:
                await store.db[name].insert_many([bson.decode(d) for d in docs])
    finally:
        await store.close()


async def test_a_backup_restored_after_erasure_cannot_reveal_the_user(dsr_data, tmp_path):
    from services.privacy import PrivacyService
    from stores.crypto import FieldCipher
    from stores.keys import KeyDestroyed
    from stores.mongo.encryption import UserKeyFieldEncryption
    from stores.postgres.users import pii_context
    from tests.integration.postgres.conftest import make_urls

    s = dsr_data.settings
    user = dsr_data.with_documents[3]
    person = dsr_data.people[user]
    urls = make_urls(s.postgres_db)

    # 1. the backup, before the erasure
    dump = tmp_path / "payments.dump"
    _pg("pg_dump", "-Fc", "-f", str(dump), urls.service)
    credit = await _dump_mongo(s)

    # 2. the erasure
    res = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON)
    assert res.returncode == 0, res.stderr

    # 3. the restore, in place (what a restore does): the database and the credit store as they were
    _pg("dropdb", "--force", "--maintenance-db", urls.admin, s.postgres_db)
    _pg("createdb", "--maintenance-db", urls.admin, s.postgres_db)
    _pg("pg_restore", "--no-owner", "-d", urls.service, str(dump))
    await _restore_mongo(s, credit)

    svc = await PrivacyService.open(s, actor="restore-tests")
    try:
        uid = uuid.UUID(user)
        async with svc.postgres.connection() as conn:
            row = await conn.fetchrow("SELECT full_name_enc, email_enc, phone_enc, address_enc, date_of_birth_enc, "
                                      "deleted_at FROM users WHERE id = $1", uid)
            kyc = await conn.fetch("SELECT id, document_number_enc FROM kyc_records WHERE user_id = $1", uid)
        assert row["deleted_at"] is None and row["email_enc"]  # the backup's rows are back...
        cipher = FieldCipher.from_settings(s)
        for col in ("full_name", "email", "phone", "address", "date_of_birth"):
            with pytest.raises(KeyDestroyed):  # ...but nothing encrypted in them opens
                cipher.decrypt(row[f"{col}_enc"], pii_context(col, uid))
        assert kyc
        for k in kyc:
            with pytest.raises(KeyDestroyed):
                cipher.decrypt(k["document_number_enc"], f"kyc_records.document_number|{k['id']}")
        report = await svc.mongo.db.credit_reports.find_one({"user_id": user})
        enc = UserKeyFieldEncryption(cipher)
        for value in [report["subject"].get(k) for k in ("ssn", "bvn", "nin") if report["subject"].get(k)] + \
                [a["account_number"] for a in report["accounts"]]:
            with pytest.raises(KeyDestroyed):
                await enc.decrypt(value, "credit_reports.x")
        for plain in (person.email, person.phone):
            assert plain not in str(row) and plain not in str(kyc)

        # the restore re-applies the erasure list before the data serves; then nothing is left at all
        reapply = run_cli(dsr_data.env, "dsr", "reapply", "--json")
        assert reapply.returncode == 0, reapply.stderr
        assert json.loads(reapply.stdout)["present_here"] >= 1
        after = await svc.verify(user)
        assert after.passed, [(v.store, v.hits, v.details, v.error) for v in after.stores if v.hits or v.error]
    finally:
        await svc.close()
    await asyncio.sleep(0)
