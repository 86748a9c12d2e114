"""Two read replicas: reads spread over both, a dead or lagging one is skipped, lag comes from
pg_stat_replication (bytes and replay lag)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stores.postgres import PostgresStore
from stores.postgres.pool import split_hosts

NAMES = {"postgres-replica", "postgres-replica2"}


async def _served_by(store: PostgresStore, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        async with store.connection(replica=True) as conn:
            in_recovery, name = await conn.fetchrow("SELECT pg_is_in_recovery(), current_setting('cluster_name')")
            seen[name if in_recovery else "primary"] += 1
    return seen


@pytest.fixture
async def store(pg_db):
    s = await PostgresStore(pg_db.service, pg_db.service_replica, timeout=2.0, replica_retry_s=(0.2, 1.0),
                            max_lag_bytes=64 * 1024, lag_check_s=0.1).connect()
    yield s
    await s.close()


def test_the_replica_url_names_both_replicas(pg_db):
    assert len(split_hosts(pg_db.service_replica)) == 2


async def test_reads_are_spread_over_both_replicas(store):
    seen = await _served_by(store, 20)
    assert set(seen) == NAMES, seen
    assert min(seen.values()) >= 5, f"round robin should share reads: {seen}"


async def test_lag_is_measured_per_replica_from_pg_stat_replication(store):
    health = await store.health()
    assert health["replica"] is True
    rows = {r["name"]: r for r in health["replicas"]}
    assert set(rows) == NAMES
    for row in rows.values():
        assert row["in_use"] and row["lag_bytes"] is not None and row["lag_s"] is not None
        assert row["sync_state"] == "async"


async def test_the_agent_role_reads_from_the_replicas_without_pg_monitor(pg_db):
    """The MCP server's role sees pg_stat_replication's rows with state and lag NULL (no pg_monitor): the
    replicas' own replay position decides. Before, every one was skipped ("WAL sender state None") and every
    read went to the primary."""
    store = await PostgresStore(pg_db.agent, pg_db.agent_replica, read_only=True, timeout=2.0,
                                max_lag_bytes=64 * 1024, lag_check_s=0.1).connect()
    try:
        rows = {r["name"]: r for r in (await store.health())["replicas"]}
        assert set(rows) == NAMES
        assert all(r["in_use"] and r["skipped"] is None and r["lag_bytes"] is not None for r in rows.values()), rows
        seen = await _served_by(store, 20)
        assert set(seen) == NAMES, seen
    finally:
        await store.close()


async def test_a_dead_replica_is_skipped_and_reads_stay_on_the_live_one(pg_db):
    from tests.integration.test_postgres_replica_retry import Forwarder

    live = split_hosts(pg_db.service_replica)[0]
    port = int(live.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    dead = Forwarder(port)  # its port is free: nothing listens until start()
    dead_url = live.replace(f":{port}/", f":{dead.port}/")
    multi = live.replace(f":{port}/", f":{port},127.0.0.1:{dead.port}/")
    store = await PostgresStore(pg_db.service, multi, timeout=2.0, replica_retry_s=(0.2, 1.0)).connect()
    try:
        assert split_hosts(multi) == [live, dead_url]
        seen = await _served_by(store, 10)
        assert seen == Counter({"postgres-replica": 10}), seen
        health = await store.health()
        down = [r for r in health["replicas"] if not r["connected"]]
        assert len(down) == 1 and "unreachable" in down[0]["error"]
    finally:
        await store.close()


async def test_a_lagging_replica_is_skipped_until_it_catches_up(store, pg_db):
    """Replay paused on replica2 for real: once it is more than max_lag_bytes behind, reads avoid it."""
    import psycopg

    second = split_hosts(pg_db.service_replica)[1]
    # Both replicas serving first: an earlier test (an alert drill stops a replica) may leave one catching up.
    for _ in range(300):
        replicas = {r["name"]: r for r in await store.check_lag()}
        if all(r["in_use"] for r in replicas.values()):
            break
        await asyncio.sleep(0.1)
    assert all(r["in_use"] for r in replicas.values()), replicas
    with psycopg.connect(second, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        async with store.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (x text)")
            await conn.execute("INSERT INTO lag_probe SELECT repeat('x', 1000) FROM generate_series(1, 500)")
        for _ in range(50):
            replicas = {r["name"]: r for r in await store.check_lag()}
            if replicas["postgres-replica2"]["skipped"]:
                break
            await asyncio.sleep(0.1)
        assert "lagging" in replicas["postgres-replica2"]["skipped"], replicas
        assert replicas["postgres-replica2"]["lag_bytes"] > 64 * 1024
        # the same 500 kB insert can put the first replica past the bound for a moment too: once it replays
        # (replay is not paused there) it serves again
        for _ in range(100):
            replicas = {r["name"]: r for r in await store.check_lag()}
            if replicas["postgres-replica"]["in_use"]:
                break
            await asyncio.sleep(0.1)
        assert replicas["postgres-replica"]["in_use"] and not replicas["postgres-replica2"]["in_use"], replicas
        assert await _served_by(store, 10) == Counter({"postgres-replica": 10})
    finally:
        with psycopg.connect(second, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    for _ in range(100):
        replicas = {r["name"]: r for r in await store.check_lag()}
        if replicas["postgres-replica2"]["in_use"]:
            break
        await asyncio.sleep(0.1)
    assert replicas["postgres-replica2"]["in_use"], replicas
    assert set(await _served_by(store, 10)) == NAMES
