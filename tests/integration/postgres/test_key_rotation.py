"""`kredete db rotate-keys` against a scratch database: every PII token moves to the new master key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.settings import resolve
from stores.crypto import FieldCipher
from stores.errors import InvalidData
from stores.postgres import PostgresStore, UserRepository
from stores.postgres.keys import ENCRYPTED_COLUMNS
from stores.scope import RowScope
from tests.integration.postgres.conftest import drop_database, fresh_database
from tests.integration.postgres.factories import add_user

KREDETE = Path(sys.executable).with_name("kredete")
NEW = "rotated-master-secret-2"


@pytest.fixture
async def scratch(pg_template):
    db = fresh_database(pg_template)
    store = await PostgresStore(db.service, statement_timeout_ms=15000).connect()
    yield db, store
    await store.close()
    drop_database(db.admin, db.db)


def rotate(db, **env_keys: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KREDETE_POSTGRES_", "KREDETE_FIELD_"))}
    env.update(KREDETE_POSTGRES_DB=db.db, COLUMNS="200", NO_COLOR="1", **env_keys)
    return subprocess.run([str(KREDETE), "db", "rotate-keys", "--batch", "2"], env=env, capture_output=True,
                          text=True, timeout=300)


async def key_ids(store: PostgresStore) -> set[str]:
    async with store.connection() as conn:
        out: set[str] = set()
        for table, cols in ENCRYPTED_COLUMNS.items():
            for c in cols:
                out |= {r[0] for r in await conn.fetch(f"SELECT DISTINCT split_part({c}, '.', 2) FROM {table} "
                                                       f"WHERE {c} IS NOT NULL")}
        return out


async def test_rotate_keys_rewraps_every_token_and_keeps_lookups(scratch, cipher):
    db, store = scratch
    old = resolve().field_encryption_master_key.get_secret_value()
    users = [await add_user(store, cipher, name=f"Person {i}", email=f"p.{i}@example.com") for i in range(5)]
    async with store.connection() as conn:
        kyc_id, pm_id = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO kyc_records (id, user_id, document_type, document_number_enc, "
                           "document_number_bidx, issuing_country, provider) VALUES ($1, $2, 'bvn', $3, $4, 'NG', "
                           "'smile_id')", kyc_id, users[0], cipher.encrypt("22212345678", f"kyc|{kyc_id}"),
                           cipher.blind_index("22212345678", "kyc.bvn"))
        await conn.execute("INSERT INTO payment_methods (id, user_id, kind, provider, currency, country, label, "
                           "details_enc, fingerprint_bidx) VALUES ($1, $2, 'bank_account', 'GTBank', 'NGN', 'NG', "
                           "'GTBank ending 6789', $3, $4)", pm_id, users[0],
                           cipher.encrypt("0123456789", f"pm|{pm_id}"),
                           cipher.blind_index("0123456789", "payment_methods.fingerprint"))
    assert await key_ids(store) == {"local-1"}

    # Without the old key in the ring nothing can be re-wrapped: refused, nothing changed.
    refused = rotate(db, KREDETE_FIELD_ENCRYPTION_MASTER_KEY=NEW, KREDETE_FIELD_ENCRYPTION_KEY_ID="k2")
    assert refused.returncode == 1 and "cannot be re-wrapped" in refused.stderr
    assert await key_ids(store) == {"local-1"}

    ring = {"KREDETE_FIELD_ENCRYPTION_MASTER_KEY": NEW, "KREDETE_FIELD_ENCRYPTION_KEY_ID": "k2",
            "KREDETE_FIELD_ENCRYPTION_OLD_KEYS": json.dumps({"local-1": old}),
            "KREDETE_FIELD_ENCRYPTION_INDEX_KEY": old}
    done = rotate(db, **ring)
    assert done.returncode == 0, done.stderr
    for table, n in (("users", 5), ("kyc_records", 1), ("payment_methods", 1)):  # re-wrapped now, remaining
        assert re.search(rf"{table}\s*│\s*{n}\s*│\s*0\s", done.stdout), done.stdout
    assert await key_ids(store) == {"k2"}

    # The new key alone now reads everything; blind indexes (kept key) still find people.
    new_only = FieldCipher(NEW, "k2", index_key=old)
    repo = UserRepository(store, cipher=new_only, replica_reads=False)
    profile = await repo.get_profile(RowScope.everyone(), users[3], include_pii=True)
    assert (profile.full_name, profile.email) == ("Person 3", "p.3@example.com")
    assert await repo.find_by_email("P.3@example.com") == users[3]
    async with store.connection() as conn:
        token = await conn.fetchval("SELECT document_number_enc FROM kyc_records WHERE id = $1", kyc_id)
        assert new_only.decrypt(token, f"kyc|{kyc_id}") == "22212345678"
    with pytest.raises(InvalidData, match="cannot be decrypted"):
        await UserRepository(store, cipher=cipher, replica_reads=False).get_profile(
            RowScope.everyone(), users[3], include_pii=True)

    again = rotate(db, **ring)
    assert again.returncode == 0 and re.search(r"users\s*│\s*0\s*│\s*0\s", again.stdout)
