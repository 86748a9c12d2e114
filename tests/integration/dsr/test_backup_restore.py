"""A backup taken before an erasure and restored afterwards cannot reveal the user's personal data.

On a scratch stack of its own (the drills' fixture: PostgreSQL, FerretDB, Redis, MinIO on free ports, its own
`.local`, key store included; OpenSearch is the session's node under an index prefix of its own), through the
operator's commands: `kredete backup run` (pgBackRest, the whole cluster: payments and the credit store),
`kredete dsr erase`, then `kredete restore --to <a time before the erasure> --replace` (the restored cluster over
the primary, FerretDB restarted on it).

After the restore the user's rows and documents are back as they were, but every encrypted value in them (name,
email, phone, date of birth, address, identity and account numbers, in PostgreSQL and in the credit store) is
ciphertext whose key is destroyed: it does not decrypt (the key store is not part of the backup). `dsr verify`
still finds what was never encrypted (pseudonymisation targets: transaction memos, the credit reports' identity
block), which is why every restore runs `kredete dsr reapply` (the receipts in the locked logs archive) before
the data serves: afterwards `dsr verify` passes on the restored stores.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.drills.conftest import Scratch, scratch_stack
from tests.integration.dsr.conftest import REASON

SEED_USERS = 8  # seed 42: user index 6 has S3 documents

_FACTS = """
import asyncio, json, uuid
from config.settings import resolve
from kredete.seed.documents import documents_for
from kredete.seed.people import person
people = [person(42, i) for i in range({n})]
uid = sorted({{d.user_id for d in documents_for(people, 42)}})[0]
p = next(x for x in people if str(x.user_id) == uid)
print(json.dumps({{"user": uid, "email": p.email, "name": p.full_name, "phone": p.phone}}))
"""

_READ_BACK = """
import asyncio, json, uuid
from config.settings import resolve
from stores.crypto import FieldCipher
from stores.keys import KeyDestroyed
from stores.mongo import MongoStore
from stores.mongo.encryption import UserKeyFieldEncryption
from stores.postgres import PostgresStore
from stores.postgres.users import pii_context
U = "{user}"
async def main():
    s = resolve()
    cipher = FieldCipher.from_settings(s)
    out = {{"pg_tokens": 0, "pg_refused": 0, "mongo_tokens": 0, "mongo_refused": 0}}
    pg = await PostgresStore(s.postgres_url.get_secret_value()).connect()
    async with pg.connection() as conn:
        row = await conn.fetchrow("SELECT full_name_enc, email_enc, phone_enc, address_enc, date_of_birth_enc, "
                                  "deleted_at FROM users WHERE id = $1", uuid.UUID(U))
        kyc = await conn.fetch("SELECT id, document_number_enc FROM kyc_records WHERE user_id = $1", uuid.UUID(U))
    await pg.close()
    out["restored_row"] = row is not None and row["deleted_at"] is None
    values = [(row[c + "_enc"], pii_context(c, U)) for c in ("full_name", "email", "phone", "address",
                                                               "date_of_birth")]
    values += [(k["document_number_enc"], "kyc_records.document_number|" + str(k["id"])) for k in kyc]
    for token, ctx in values:
        if token:
            out["pg_tokens"] += 1
            try:
                cipher.decrypt(token, ctx)
            except KeyDestroyed:
                out["pg_refused"] += 1
    mongo = await MongoStore(s.mongo_url.get_secret_value(), s.mongo_db).connect()
    enc = UserKeyFieldEncryption(cipher)
    async for doc in mongo.db.credit_reports.find({{"user_id": U}}):
        for value in [doc["subject"].get(k) for k in ("ssn", "bvn", "nin")] + \\
                [a.get("account_number") for a in doc["accounts"]]:
            if value:
                out["mongo_tokens"] += 1
                try:
                    await enc.decrypt(value, "credit_reports.x")
                except KeyDestroyed:
                    out["mongo_refused"] += 1
    await mongo.close()
    print(json.dumps(out))
asyncio.run(main())
"""

_SWITCH_WAL = """
import time
from kredete.drills.backups import archiver
from kredete.stack.postgres import PostgresPrimary
p = PostgresPrimary()
before = archiver().get("archived_count") or 0
p._psql("SELECT pg_switch_wal()")
deadline = time.time() + 120
while (archiver().get("archived_count") or 0) <= before and time.time() < deadline:
    time.sleep(0.5)
print(archiver().get("archived_count"))
"""


@pytest.fixture(scope="module")
def scratch(stack):
    """PostgreSQL, FerretDB, Redis and MinIO of its own (what the backup and the restore touch); OpenSearch is
    the session's node under an index prefix of its own: no backup holds it, and a second JVM on a loaded
    2-core machine took over 120 s to start."""
    from config.settings import resolve

    prefix = f"kredete-dsr-restore-{uuid.uuid4().hex[:8]}"
    search_url = resolve().opensearch_url.get_secret_value()
    try:
        # s3-dr too: `s3 setup` replicates the documents to the DR region (`--only s3` starts the primary with
        # its access-log receiver and cold tier, not the DR server)
        yield from scratch_stack(("postgres", "redis", "mongo", "s3", "s3-dr"), KREDETE_REDIS_TOPOLOGY="standalone",
                                 KREDETE_OPENSEARCH_URL=search_url, KREDETE_INDEX_PREFIX=prefix)
    finally:
        asyncio.run(_drop_indices(search_url, prefix))


async def _drop_indices(url: str, prefix: str) -> None:
    from stores.search import SearchStore

    search = await SearchStore(url, prefix=prefix).connect()
    try:
        await search.os.indices.delete(index=f"{prefix}-*", expand_wildcards="all", ignore_unavailable=True)
        templates = await search.os.indices.get_index_template(name=f"{prefix}-*", ignore=404)
        for t in templates.get("index_templates", []):
            await search.os.indices.delete_index_template(name=t["name"])
    finally:
        await search.close()


def _verify(s: Scratch, user: str) -> dict:
    return json.loads(s.run("dsr", "verify", "--user", user, "--json", check=False).stdout)


def test_a_backup_restored_after_erasure_cannot_reveal_the_user(scratch: Scratch):
    s = scratch
    s.run("s3", "setup", timeout=900)
    # the documents (and users 5..7) on top, with the scratch stack's one transaction per user
    s.run("seed", "--users", str(SEED_USERS), "--transactions-per-user", "1", timeout=900)
    facts = json.loads(s.py(_FACTS.format(n=SEED_USERS)))
    user = facts["user"]

    s.json_out("backup", "run", "--type", "full")  # the backup, before the erasure
    time.sleep(1.5)
    target = datetime.now(UTC)  # restore to here: after the backup, before the erasure
    time.sleep(1.5)
    s.run("dsr", "erase", "--user", user, "--reason", REASON, timeout=600)
    assert _verify(s, user)["passed"]
    s.py(_SWITCH_WAL, timeout=180)  # the erasure's WAL archived too: a restore could replay it, and must not

    # --no-reapply: the restored data as the backup holds it, to show what crypto-shredding alone leaves
    restored = json.loads(s.run("restore", "--to", target.isoformat(), "--replace", "--no-reapply", timeout=1800)
                          .stdout.strip().splitlines()[-1])
    assert restored["replaced"] is True and "dsr_reapply" not in restored

    back = json.loads(s.py(_READ_BACK.format(user=user)))
    assert back["restored_row"], "the backup's rows are back"
    assert back["pg_tokens"] >= 5 and back["pg_refused"] == back["pg_tokens"], back
    assert back["mongo_tokens"] >= 1 and back["mongo_refused"] == back["mongo_tokens"], back

    before = _verify(s, user)
    assert not before["passed"]  # the plaintext the erasure had removed (memos, identity blocks) is back...
    assert next(v for v in before["stores"] if v["store"] == "keystore")["hits"] == 0  # ...but not the key

    # the restore as operators run it: it re-applies the erasures on record before the data serves
    again = json.loads(s.run("restore", "--to", target.isoformat(), "--replace", timeout=1800)
                       .stdout.strip().splitlines()[-1])
    out = again["dsr_reapply"]
    assert out["present_here"] >= 1 and out["receipts"] >= 1
    after = _verify(s, user)
    assert after["passed"], [(v["store"], v["hits"], v["details"]) for v in after["stores"] if v["hits"]]
