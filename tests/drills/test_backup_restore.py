"""pgBackRest backups and restores on a scratch stack: run/list/verify, restore into a separate dir, the bad
inputs and faults (each a clear error, nothing overwritten), a failed archive push made visible, and the
restore and PITR drills at a small size."""

from __future__ import annotations

import json
import re

import pytest

from tests.drills.conftest import USERS, Scratch

pytestmark = pytest.mark.integration

_S3 = """
import asyncio, json, sys
from config.settings import resolve
from stores.objects.principals import objects_for
store = objects_for(resolve(), "backup_writer")
async def main():
    async with store.client() as s3:
{body}
    await store.close()
asyncio.run(main())
"""


def s3(scratch: Scratch, body: str) -> str:
    return scratch.py(_S3.format(body="\n".join("        " + ln for ln in body.strip().splitlines())))


def wal_keys(scratch: Scratch) -> list[str]:
    out = s3(scratch, """
pages = s3.get_paginator("list_objects_v2").paginate(Bucket="kredete-backups", Prefix="pgbackrest/")
keys = []
async for page in pages:
    keys += [o["Key"] for o in page.get("Contents", []) if "/archive/" in o["Key"] and "-" in o["Key"].rsplit("/", 1)[1]
             and not o["Key"].endswith((".backup", ".history"))]
print(json.dumps(sorted(keys)))
""")
    return json.loads(out)


def archiver_failing(scratch: Scratch, timeout_s: float) -> dict:
    """pg_stat_archiver as `kredete backup list` reads it, once it reports failing (or after `timeout_s`). Polled
    in one process: a process per look cost a second of CPU each."""
    return json.loads(scratch.py(f"""
import json, time
from kredete.drills.backups import archiver
deadline = time.monotonic() + {timeout_s}
status = archiver()
while not status["failing"] and time.monotonic() < deadline:
    time.sleep(0.5)
    status = archiver()
print(json.dumps(status, default=str))
""", timeout=timeout_s + 60).strip().splitlines()[-1])


def last_line(proc) -> str:
    return proc.stdout.strip().splitlines()[-1]


def error_of(proc) -> str:
    return " ".join((proc.stdout + proc.stderr).split())


@pytest.fixture(scope="module")
def first_backup(scratch: Scratch) -> dict:
    return scratch.json_out("backup", "run", "--type", "full")


def test_backup_run_list_verify_and_audit(scratch, first_backup):
    assert first_backup["type"] == "full" and first_backup["repo_bytes"] > 0
    listed = json.loads(last_line(scratch.run("backup", "list", "--json")))
    assert first_backup["label"] in [b["label"] for b in listed["backups"]]
    assert listed["status"]["archive"]["failing"] is False
    assert (scratch.local / "pgbackrest" / "status.json").exists(), "status for monitoring"
    verify = scratch.run("backup", "verify")
    assert "repository verified" in error_of(verify)
    conf = scratch.local / "pgbackrest" / "pgbackrest.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    assert "repo1-cipher-type=aes-256-cbc" in conf.read_text() and "repo1-retention-full=35" in conf.read_text()
    # The secrets are in that file only: never in pgBackRest's logs.
    secret = re.search(r"repo1-cipher-pass=(\S+)", conf.read_text()).group(1)
    for log in (scratch.local / "pgbackrest" / "log").iterdir():
        assert secret not in log.read_text(errors="replace")
    audit = scratch.py("""
import asyncio
from config.settings import resolve
from stores.registry import build_postgres
from stores.postgres.audit import AuditRepository
from stores.scope import RowScope
async def main():
    store = await build_postgres(resolve()).connect()
    rows = await AuditRepository(store).search(RowScope.everyone(), action="backup.run")
    print(len(rows), rows[0].metadata.get("label") if rows else None)
    await store.close()
asyncio.run(main())
""")
    assert audit.split()[1] == first_backup["label"], audit


def test_restore_latest_into_a_separate_dir_leaves_the_primary_alone(scratch, first_backup):
    pid_before = (scratch.local / "postgres" / "server.pid").read_text()
    result = json.loads(last_line(scratch.run("restore", "--to", "latest")))
    assert result["replaced"] is False and result["timeline"] >= 2
    target = scratch.local.joinpath(*result["target_dir"].split(str(scratch.local) + "/")[1].split("/"))
    assert (target / "PG_VERSION").exists()
    assert (scratch.local / "postgres" / "server.pid").read_text() == pid_before, "the primary was not touched"


@pytest.mark.parametrize(("args", "expected"), [
    (("--to", "2001-01-01T00:00:00Z"), "is before the first backup finished"),
    (("--to", "latest", "--set", "20010101-000000F"), "unknown backup label '20010101-000000F'"),
    (("--to", "yesterday"), "neither `latest` nor an ISO-8601 time"),
])
def test_bad_restore_inputs_are_refused_before_anything_is_written(scratch, first_backup, args, expected):
    before = sorted((scratch.local / "restores").iterdir()) if (scratch.local / "restores").exists() else []
    proc = scratch.run("restore", *args, check=False)
    assert proc.returncode == 1 and expected in error_of(proc)
    after = sorted((scratch.local / "restores").iterdir()) if (scratch.local / "restores").exists() else []
    assert after == before, "no restore dir was made"


def test_a_non_empty_target_dir_is_refused_and_left_as_it_was(scratch, first_backup):
    target = scratch.local / "not-empty"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    proc = scratch.run("restore", "--to", "latest", "--target-dir", str(target), check=False)
    assert proc.returncode == 1 and "is not empty" in error_of(proc)
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and (target / "keep.txt").read_text() == "precious"


@pytest.fixture(scope="module")
def wal_base(scratch, first_backup) -> dict:
    """The backup the WAL-fault restores start from (the damaged segments come after it)."""
    return scratch.json_out("backup", "run", "--type", "incr")


@pytest.mark.parametrize("fault", ["missing", "corrupted"])
def test_a_missing_or_corrupted_wal_segment_is_refused(scratch, wal_base, fault):
    base = wal_base
    # Three archived segments after the backup; `check` switches once more and waits until that segment is
    # in the repository (archiving is in order: the three before it are too).
    scratch.py("""
from kredete.stack import pgbackrest
from kredete.stack.postgres import PostgresPrimary
p = PostgresPrimary()
for i in range(3):
    p._psql(f"CREATE TABLE IF NOT EXISTS wal_probe (x int); INSERT INTO wal_probe VALUES ({i})")
    p._psql("SELECT pg_switch_wal()")
pgbackrest.pgbackrest("check", timeout=120)
""")
    keys = wal_keys(scratch)
    victim = keys[-2]  # one in the middle of what a restore to latest must replay
    if fault == "missing":
        s3(scratch, f'await s3.delete_object(Bucket="kredete-backups", Key="{victim}")')  # a delete marker
    else:
        s3(scratch, f'await s3.put_object(Bucket="kredete-backups", Key="{victim}", Body=b"not a WAL segment")')
    proc = scratch.run("restore", "--to", "latest", "--set", base["label"], check=False)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "missing or unreadable" in error_of(proc), error_of(proc)[-1500:]
    verify = scratch.run("backup", "verify", check=False)
    assert verify.returncode == 1, "verify reports the damaged archive"


def test_the_lookup_finds_every_acknowledged_score_point_past_unacknowledged_ones(scratch):
    """101 points of one run in the credit store, one of them never acknowledged (a write that failed at the
    client yet committed): every acknowledged point is found, and one acknowledged but never written is the
    one reported missing. (A single range read returns the newest 100: it reported the oldest as lost.)"""
    out = scratch.py("""
import asyncio, json
from datetime import timedelta
from uuid import uuid4
from config.settings import resolve
from kredete.drills.load import AS_OF_BASE, Ack, missing
from stores.mongo import MongoStore
from stores.mongo.credit import ScoreHistoryRepository
from stores.mongo.documents import Bureau, ScorePoint
run_id, uid = "lookup-" + uuid4().hex[:8], uuid4()
base = AS_OF_BASE + timedelta(days=20000)
async def main():
    s = resolve()
    mongo = MongoStore(s.mongo_url.get_secret_value(), s.mongo_db, timeout=s.connect_timeout_s)
    await mongo.connect()
    repo = ScoreHistoryRepository(mongo)
    for k in range(101):
        await repo.record(ScorePoint(user_id=uid, bureau=Bureau.EXPERIAN, score_model=run_id, score=500,
                                     as_of=base + timedelta(seconds=k), source="estimate"))
    await mongo.close()
    acks = [Ack("credit", uid, (base + timedelta(seconds=k)).isoformat(), float(k)) for k in range(101) if k != 50]
    never_written = Ack("credit", uid, (base + timedelta(seconds=500)).isoformat(), 500.0)
    print(json.dumps({"all_written": [a.key for a in await missing(acks, run_id=run_id)],
                      "one_not": [a.key for a in await missing([*acks, never_written], run_id=run_id)],
                      "never_written": never_written.key}))
asyncio.run(main())
""")
    got = json.loads(out.strip().splitlines()[-1])
    assert got["all_written"] == []
    assert got["one_not"] == [got["never_written"]]


def _drill_line(proc) -> dict[str, float]:
    line = last_line(proc)
    m = re.fullmatch(r"RPO=([\d.]+) RTO=([\d.]+) lost_acknowledged=(\d+)", line)
    assert m, f"last line {line!r}"
    return {"rpo": float(m[1]), "rto": float(m[2]), "lost": int(m[3])}


def test_restore_drill(scratch, first_backup):
    proc = scratch.run("drill", "restore", "--users", str(USERS), "--load-s", "10", check=False, timeout=900)
    assert proc.returncode == 0, error_of(proc)[-3000:]
    got = _drill_line(proc)
    assert got["rpo"] <= 60 and got["rto"] <= 300
    text = error_of(proc)
    # The restore replayed archived WAL past the backup: writes of the load came back, not only the backup.
    acked = int(re.search(r"load: (\d+) writes acknowledged before the cut", text)[1])
    assert acked > 0 and got["lost"] < acked, text[-1500:]
    assert "db check-balances: ok" in text and "db verify-audit: ok" in text and "MCP server: answers" in text


def test_pitr_drill_gets_every_row_back(scratch, first_backup):
    proc = scratch.run("drill", "pitr", "--users", str(USERS), "--load-s", "8", check=False, timeout=900)
    assert proc.returncode == 0, error_of(proc)[-3000:]
    got = _drill_line(proc)
    assert got["lost"] == 0 and got["rpo"] == 0
    assert "gone from both stores, every earlier one is back" in error_of(proc)


# Last: PostgreSQL's archiver backs off after failures, which would slow the tests after it.
def test_repository_unreachable_and_a_failed_archive_push_are_visible(scratch, first_backup):
    scratch.run("stack", "down", "--only", "s3")
    try:
        # A WAL segment that cannot be pushed: archive_command fails, PostgreSQL keeps it and counts it. Switched
        # first: pgBackRest retries the refused connection for about half a minute before the push fails, and the
        # restore and `backup list` below are checked meanwhile.
        scratch.py("""
from kredete.stack.postgres import PostgresPrimary
p = PostgresPrimary()
p._psql("CREATE TABLE IF NOT EXISTS archive_probe (x int); INSERT INTO archive_probe VALUES (1)")
p._psql("SELECT pg_switch_wal()")
""")
        proc = scratch.run("restore", "--to", "latest", check=False)
        assert proc.returncode == 1 and "repository" in error_of(proc) and "unreachable" in error_of(proc)
        proc = scratch.run("backup", "list", check=False)
        assert proc.returncode == 1 and "unreachable" in error_of(proc)
        status = archiver_failing(scratch, 90)
        assert status["failing"] is True and status["failed_count"] >= 1, status
    finally:
        scratch.run("stack", "up", "--only", "s3")
    # PostgreSQL keeps the segment and retries it (every minute after three failures): nothing is skipped.


# --- Redis: one RDB per cluster master in the backups bucket, restored into a dir or over the live cluster ----

_REDIS_SECRETS: dict[str, str] = {}


def _redis_cli(scratch: Scratch, *args: str) -> str:
    import os
    import subprocess

    # Read once per scratch stack: a Python process per call cost a second each on a loaded CI machine.
    if str(scratch.local) not in _REDIS_SECRETS:
        _REDIS_SECRETS[str(scratch.local)] = scratch.py(
            "from config.secrets import local_secrets; print(local_secrets()['redis_default'])").strip()
    secret = _REDIS_SECRETS[str(scratch.local)]
    port = int(scratch.env["KREDETE_PORT_REDIS"]) + 2  # the cluster's first node (config.ports.REDIS_CLUSTER)
    proc = subprocess.run(["redis-cli", "-c", "-p", str(port), "--user", "kredete", "--no-auth-warning", *args],
                          env={**os.environ, "REDISCLI_AUTH": secret}, capture_output=True, text=True, timeout=30,
                          check=True)
    return proc.stdout.strip()


def test_redis_cluster_snapshot_restores_into_a_dir_and_over_the_live_cluster(scratch, tmp_path):
    for i in range(30):  # spread over the three masters' slot ranges
        _redis_cli(scratch, "SET", f"snapshot-test:{i}", f"v{i}")
    _redis_cli(scratch, "SET", "snapshot-test:ttl", "kept with its TTL", "EX", "3600")
    taken = scratch.json_out("backup", "redis")
    assert taken["snapshot"].endswith(".cluster") and taken["files"] == 3 and taken["bytes"] > 0
    _redis_cli(scratch, "SET", "snapshot-test:after", "written after the snapshot")

    restored = scratch.json_out("backup", "redis-restore", "--target-dir", str(tmp_path / "rdb"))
    assert restored["snapshot"] == taken["snapshot"] and restored["files"] == 3 and restored["keys"] >= 31
    assert 1 <= restored["keys_with_ttl"] < restored["keys"]
    assert len(list((tmp_path / "rdb").glob("slots-*.rdb"))) == 3

    again = scratch.run("backup", "redis-restore", "--target-dir", str(tmp_path / "rdb"), check=False)
    assert again.returncode != 0 and "not empty" in error_of(again)
    unknown = scratch.run("backup", "redis-restore", "--snapshot", "19990101T000000.cluster", check=False)
    assert unknown.returncode != 0 and "unknown Redis snapshot" in error_of(unknown)

    replaced = json.loads(last_line(scratch.run("backup", "redis-restore", "--replace", timeout=300)))
    # Keys with a TTL in the snapshot (rate-limit windows, cached answers of the drills before) may expire
    # before the cluster is back; the command itself refuses a restore that lost any other key.
    assert replaced["replaced"] is True
    assert replaced["keys"] - replaced["keys_with_ttl"] <= replaced["live_keys"] <= replaced["keys"], replaced
    assert _redis_cli(scratch, "GET", "snapshot-test:7") == "v7"
    assert 0 < int(_redis_cli(scratch, "TTL", "snapshot-test:ttl")) <= 3600, "the TTL is restored with the key"
    assert _redis_cli(scratch, "GET", "snapshot-test:after") == "", "a key written after the snapshot is gone"
    assert "cluster_state:ok" in _redis_cli(scratch, "CLUSTER", "INFO")
