"""`kredete db ...` run as a real process against a scratch database (KREDETE_POSTGRES_DB picks it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from stores.postgres import migrate
from stores.postgres.wallets import house_wallet_id
from tests.integration.postgres.conftest import drop_database, fresh_database

KREDETE = Path(sys.executable).with_name("kredete")


@pytest.fixture
def scratch(pg_template):
    db = fresh_database(pg_template)
    yield db
    drop_database(db.admin, db.db)


def kredete(db, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KREDETE_POSTGRES_")}
    env.update(KREDETE_POSTGRES_DB=db.db, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(KREDETE), "db", *args], env=env, capture_output=True, text=True, timeout=300)


def test_status_and_rollback(scratch):
    head = migrate.status(scratch.service)
    assert head.pending == [] and len(head.applied) >= 11
    ok = kredete(scratch, "status")
    assert ok.returncode == 0 and f"{head.head}" in ok.stdout and "pending" not in ok.stdout

    # Rolling back every applied step is rolling back to base: it needs --yes, whichever way it is asked.
    for args in (["--steps", str(len(head.applied))], ["--steps", "99"], ["--to", "base"]):
        refused = kredete(scratch, "rollback", *args)
        assert refused.returncode == 1 and "pass --yes" in refused.stderr, args
    assert migrate.status(scratch.service).current == head.head

    one = kredete(scratch, "rollback")
    assert one.returncode == 0, one.stderr
    assert migrate.status(scratch.service).current == head.applied[-2]
    pending = kredete(scratch, "status")
    assert pending.returncode == 1 and head.head in pending.stdout and "pending" in pending.stdout

    two = kredete(scratch, "rollback", "--steps", "2")
    assert two.returncode == 0 and migrate.status(scratch.service).current == head.applied[-4]
    assert kredete(scratch, "migrate").returncode == 0
    assert migrate.status(scratch.service).current == head.head


def test_rollback_everything_with_yes(scratch):
    applied = migrate.status(scratch.service).applied
    done = kredete(scratch, "rollback", "--steps", str(len(applied)), "--yes")
    assert done.returncode == 0, done.stderr
    assert migrate.status(scratch.service).current is None
    assert kredete(scratch, "migrate").returncode == 0


def test_check_balances_reports_a_wallet_that_disagrees_with_its_ledger(scratch):
    fine = kredete(scratch, "check-balances")
    assert fine.returncode == 0 and "every wallet balance matches its ledger" in fine.stdout
    wallet = house_wallet_id("fees", "NGN")
    with psycopg.connect(scratch.service, autocommit=True) as conn:  # superuser, behind the ledger's back
        conn.execute("UPDATE wallets SET balance_minor = 5 WHERE id = %s", (wallet,))
    bad = kredete(scratch, "check-balances")
    assert bad.returncode == 1
    assert f"mismatch wallet {wallet} NGN: stored 5, ledger 0" in bad.stdout
    assert "differ from their ledger" not in bad.stdout  # all of them are listed: no "first N" line


async def test_mismatch_count_counts_every_corrupted_wallet(scratch):
    from stores.postgres.pool import PostgresStore
    from stores.postgres.wallets import WalletRepository

    with psycopg.connect(scratch.service, autocommit=True) as conn:
        conn.execute("UPDATE wallets SET balance_minor = balance_minor + 7 WHERE kind <> 'customer'")
        corrupted = conn.execute("SELECT count(*) FROM wallets WHERE kind <> 'customer'").fetchone()[0]
    store = await PostgresStore(scratch.service).connect()
    try:
        repo = WalletRepository(store, replica_reads=False)
        assert await repo.mismatch_count() == corrupted
        assert len(await repo.mismatches()) == min(corrupted, 100)
    finally:
        await store.close()


def test_verify_audit_finds_the_tampered_row(scratch):
    with psycopg.connect(scratch.service, autocommit=True) as conn:
        ids = [conn.execute("SELECT audit_append('agent-1', 'support_agent', 'get_transaction', 'allowed')")
               .fetchone()[0] for _ in range(3)]
    intact = kredete(scratch, "verify-audit")
    assert intact.returncode == 0 and f"audit chain intact: 3 rows, last id {ids[-1]}" in intact.stdout
    with psycopg.connect(scratch.service, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_logs SET decision = 'denied' WHERE id = %s", (ids[1],))
    broken = kredete(scratch, "verify-audit")
    assert broken.returncode == 1 and f"audit chain broken at id {ids[1]}" in broken.stdout
