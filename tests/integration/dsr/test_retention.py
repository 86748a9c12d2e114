"""Retention on the real servers: an audit_logs partition older than retention is archived to the logs bucket
(COMPLIANCE lock), dropped, and the chain still verifies across it (`kredete db verify-audit`, with `--archive`
re-hashing the archived rows); a partition dropped without its archive breaks it. Ended sessions are purged. A
time-based search index is rolled over and the rolled-over index past retention deleted."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from config.retention import Dataset, RetentionPolicy, load_policy
from config.settings import resolve
from tests.integration.dsr.conftest import run_cli

NOW = datetime.now(UTC)


def _policy(*names: str, archive_days: int = 1) -> RetentionPolicy:
    """The real policy's entries (objects locked a day here, not seven years: test data)."""
    real = load_policy()
    return RetentionPolicy(dataset=[Dataset(**{**real.get(n).model_dump(), **(
        {"archive_days": archive_days} if real.get(n).archive_days else {})}) for n in names])


async def _service(store, policy: RetentionPolicy):
    from services.retention import RetentionService
    from stores.objects.principals import objects_for

    s = resolve()
    return RetentionService(s, policy, postgres=store, archiver=objects_for(s, "archiver"),
                            auditor=objects_for(s, "auditor"), actor="retention-tests")


async def _append(store, n: int, at: datetime | None = None, action: str = "get_transaction") -> None:
    from stores.postgres import AuditRepository
    from stores.postgres.models import AuditEntry

    repo = AuditRepository(store)
    for i in range(n):
        await repo.append(AuditEntry(actor_subject="agent-7", actor_role="support_agent", action=action,
                                     decision="allowed", rows_returned=i, occurred_at=at))


def _month(days_ago: int) -> date:
    return (NOW - timedelta(days=days_ago)).date().replace(day=1)


@pytest.fixture(scope="module")
def s3(session_stack):
    import asyncio

    from stores.objects.setup import setup_all

    session_stack.need(["s3", "s3-dr"])
    asyncio.run(setup_all(resolve()))


async def test_an_old_partition_is_archived_dropped_and_still_verifiable(pg_db, service_store, s3):
    from stores.objects.buckets import logs_bucket
    from stores.objects.privacy import lock_of
    from stores.postgres import AuditRepository
    from stores.postgres.audit_archive import AuditArchiveRepository

    old = _month(800)
    async with service_store.connection() as conn:
        await conn.execute("SELECT ensure_monthly_partitions('audit_logs'::regclass, $1, 1)", old)
    await _append(service_store, 5)  # live rows
    await _append(service_store, 4, datetime(old.year, old.month, 15, tzinfo=UTC), "old_lookup")  # the old month
    await _append(service_store, 3)  # newer live rows: the old partition is a segment in the middle of the chain
    part = f"audit_logs_y{old:%Y_%m}"

    svc = await _service(service_store, _policy("postgres.audit_logs"))
    try:
        (planned,) = await svc.plan()
        assert part in planned.detail["archive"] and part in planned.detail["drop"]
        async with service_store.connection() as conn:
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", part)  # a plan changes nothing
        (done,) = await svc.run()
        assert done.error is None, done.error
        assert done.detail["chain"].startswith("ok")
    finally:
        await svc.close()

    async with service_store.connection() as conn:
        assert not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", part)
        arch = await conn.fetchrow("SELECT rows, object_key, version_id, dropped_at FROM audit_archive "
                                   "WHERE partition = $1", part)
        assert arch["rows"] == 4 and arch["dropped_at"] is not None
        assert await conn.fetchval("SELECT count(*) FROM audit_logs WHERE action = 'old_lookup'") == 0
    from stores.objects.principals import objects_for

    auditor = objects_for(resolve(), "auditor")
    try:
        lock = await lock_of(auditor, logs_bucket(), arch["object_key"], arch["version_id"])
        assert lock["mode"] == "COMPLIANCE"
    finally:
        await auditor.close()

    segments = await AuditArchiveRepository(service_store).segments()
    report = await AuditRepository(service_store).verify_chain(archived=segments)
    assert report.ok, report
    assert (await AuditRepository(service_store).verify_chain()).ok is False  # without the archive: a gap
    cli = run_cli({**__import__("os").environ}, "db", "verify-audit", "--url", pg_db.service, "--archive")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "archived segment" in cli.stdout and "archives intact" in cli.stdout

    # a partition dropped without an archive is a break the verifier reports
    lost = _month(830)
    async with service_store.connection() as conn:
        await conn.execute("SELECT ensure_monthly_partitions('audit_logs'::regclass, $1, 1)", lost)
    await _append(service_store, 2, datetime(lost.year, lost.month, 10, tzinfo=UTC))
    await _append(service_store, 1)
    async with service_store.connection() as conn:
        await conn.execute(f"ALTER TABLE audit_logs DETACH PARTITION audit_logs_y{lost:%Y_%m}")
        await conn.execute(f"DROP TABLE audit_logs_y{lost:%Y_%m}")
    broken = await AuditRepository(service_store).verify_chain(archived=await AuditArchiveRepository(
        service_store).segments())
    assert not broken.ok and "removed" in broken.reason
    cli = run_cli({**__import__("os").environ}, "db", "verify-audit", "--url", pg_db.service)
    assert cli.returncode == 1


async def test_ended_sessions_are_purged(service_store, cipher, s3):
    from tests.integration.postgres.factories import add_user

    user = await add_user(service_store, cipher)
    async with service_store.connection() as conn:
        for ended_days_ago, revoked in ((40, False), (35, True), (2, False)):
            created = NOW - timedelta(days=ended_days_ago + 30)
            await conn.execute(
                "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at, revoked_at) VALUES "
                "($1, $2, $3, $4, $5, $6)", uuid.uuid4(), user, uuid.uuid4().hex * 2, created,
                created + timedelta(days=30) if not revoked else NOW + timedelta(days=10),
                NOW - timedelta(days=ended_days_ago) if revoked else None)
    svc = await _service(service_store, _policy("postgres.sessions"))
    try:
        (planned,) = await svc.plan()
        assert planned.count == 2
        (done,) = await svc.run()
        assert done.done == 2
    finally:
        await svc.close()
    async with service_store.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user) == 1


async def test_a_time_based_index_is_rolled_over_and_the_old_one_deleted(own_search):
    from stores.search import retention
    from stores.search.catalog import AUDIT_LOGS, static_specs
    from stores.search.indexes import IndexManager

    spec = static_specs()[AUDIT_LOGS]
    first = await IndexManager(own_search).ensure(spec)
    alias = own_search.index_name(AUDIT_LOGS)
    old = (NOW - timedelta(days=500)).isoformat()
    for i in range(3):
        await own_search.os.index(index=alias, id=f"old-{i}", body={"audit_id": f"old-{i}", "occurred_at": old,
                                                                     "action": "x", "decision": "allowed"},
                                  refresh=True)
    ran = await retention.run(own_search, AUDIT_LOGS, "occurred_at", rollover_days=0, retention_days=395)
    assert ran["rollover"] and ran["delete"] == []  # rolled over; the old index ages out on the next run
    await own_search.os.index(index=alias, id="new-1", body={"audit_id": "new-1", "occurred_at": NOW.isoformat(),
                                                             "action": "x", "decision": "allowed"}, refresh=True)
    plan = await retention.plan(own_search, AUDIT_LOGS, "occurred_at", rollover_days=30, retention_days=395)
    assert plan == {"indices": 2, "rollover": False, "delete": [first], "delete_docs": 3}
    await retention.run(own_search, AUDIT_LOGS, "occurred_at", rollover_days=30, retention_days=395)
    assert not await own_search.os.indices.exists(index=first)
    count = await own_search.os.count(index=alias)
    assert count["count"] == 1  # the alias reads the newer generation
