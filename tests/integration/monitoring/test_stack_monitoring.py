"""The monitoring stack as an operator meets it: targets in `stack status`, `ops status`, `ops slow-queries`,
the MCP server's /metrics scraped, bad input refused or shown for what it is."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest

from config.paths import REPO_ROOT
from kredete.ops.alert_drills import fast_stop, query, wait_until

KREDETE = str(REPO_ROOT / ".venv" / "bin" / "kredete")
pytestmark = pytest.mark.timeout(300)


def kredete(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([KREDETE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=REPO_ROOT)


def test_every_target_is_up_in_stack_status(monitoring):
    out = kredete("stack", "status")
    assert "Prometheus scrape targets" in out.stdout
    jobs = {"postgres", "redis", "mongo", "s3", "opensearch", "storage", "pipelines", "alertmanager", "prometheus"}
    for job in jobs:
        assert f"│ {job} " in out.stdout, job
    assert " down " not in out.stdout and " unknown " not in out.stdout, out.stdout
    assert out.returncode == 0, out.stdout + out.stderr


async def test_a_target_that_is_down_is_shown_down_not_stale(monitoring):
    """The redis exporter stopped: its target is down in stack status (exit 1) and ops status (critical);
    the replica stopped behind a running exporter: shown down too, never with its last numbers."""
    from kredete.stack import exporters
    from kredete.stack.postgres import PostgresPrimary, PostgresReplica
    from kredete.stack.redis import RedisServer

    redis_exporter = exporters.RedisExporter([RedisServer()])
    replica = PostgresReplica(PostgresPrimary())
    await asyncio.to_thread(redis_exporter.stop)
    await asyncio.to_thread(fast_stop, replica)
    try:
        try:
            # The replica's exporter either answers with pg_up 0 or fails the scrape (target down).
            await wait_until(lambda: query('up{job="redis"} == 0') and query(
                'pg_up{server="postgres-replica"} == 0 or up{server="postgres-replica"} == 0') and not query(
                'kredete_pg_standby_wal_receiver_streaming{server="postgres-replica"} == 1'), 60,
                "both down in Prometheus")
        except TimeoutError as exc:
            seen = (query('up{job="redis"}'), query("pg_up"))
            raise AssertionError(f"{exc}: redis up {seen[0]}, pg_up {seen[1]}") from None
        out = await asyncio.to_thread(kredete, "stack", "status")
        assert out.returncode == 1
        targets = out.stdout.split("Prometheus scrape targets", 1)[1].splitlines()
        redis_row = next(line for line in targets if line.startswith("│ redis "))
        replica_row = next(line for line in targets if re.search(r"│ postgres-replica\s+│", line))
        assert "│ down │" in redis_row, redis_row
        assert "│ down │" in replica_row, replica_row
        status = await asyncio.to_thread(kredete, "ops", "status", "--json")
        assert status.returncode == 1
        body = json.loads(status.stdout)
        down = {s["store"] for s in body["stores"] if not s["ok"]}
        assert {"redis", "postgres-replica"} <= down
        assert any("redis" in c for c in body["critical"])
        replica_row = next(r for r in body["replicas"] if r["replica"] == "postgres-replica")
        assert replica_row["streaming"] is False and replica_row["replay_delay_s"] is None  # no stale number
    finally:
        await asyncio.to_thread(replica.start)
        await asyncio.to_thread(redis_exporter.start)
    # the two stopped here, not any target: an MCP server another test just stopped may linger in Prometheus
    await wait_until(lambda: not query('up{job!~"mcp|app"} == 0') and not query("pg_up == 0"), 60, "both back up")


def test_a_bad_threshold_is_refused_by_name_at_start(monitoring):
    bad = {"KREDETE_ALERT_DISK_USED_RATIO": "1.5"}
    out = kredete("stack", "up", "--only", "prometheus", env=bad)
    assert out.returncode != 0
    assert "KREDETE_ALERT_DISK_USED_RATIO" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    # The running Prometheus kept its configuration (thresholds unchanged).
    assert query('kredete_alert_threshold{threshold="disk_used_ratio"} == 0.998')
    collector = subprocess.run([sys.executable, "-m", "kredete.ops.collector", "--port", "1"], capture_output=True,
                               text=True, timeout=120, env={**os.environ, **bad}, cwd=REPO_ROOT)
    assert collector.returncode != 0 and "KREDETE_ALERT_DISK_USED_RATIO" in collector.stderr


def test_the_mcp_servers_metrics_are_scraped_while_it_runs(monitoring):
    """`kredete serve --transport http` announces itself; Prometheus scrapes its tool and pool metrics; the
    announcement goes away with the server."""
    from evals.harness import http_server
    from kredete.stack.prometheus import targets_dir

    with http_server(dict(os.environ), log_name="monitoring-mcp", timeout_s=180) as url:
        port = url.split(":")[2].split("/")[0]
        instance = f"127.0.0.1:{port}"
        assert (targets_dir() / "mcp" / f"127.0.0.1_{port}.json").exists()
        asyncio.run(wait_until(lambda: query(f'up{{job="mcp", instance="{instance}"}} == 1'), 30, "mcp target up"))
        pools = query(f'kredete_pool_max_connections{{instance="{instance}"}}')
        assert {m["store"] for m, _v in pools} >= {"mongo", "redis"}
        assert query(f'kredete_audit_write_failures_total{{instance="{instance}"}}')
    assert not (targets_dir() / "mcp" / f"127.0.0.1_{port}.json").exists()


async def test_slow_queries_shows_normalised_statements(scratch, monitoring):
    pg = await scratch.postgres()
    async with pg.connection() as conn:
        # one row (the drill table holds 'a' and 'b'), so pg_sleep runs once whatever ran before this test
        await conn.execute("SELECT pg_sleep(0.2), 'secret-literal-4111' FROM drill WHERE v <> 'x-literal' LIMIT 1")
    out = await asyncio.to_thread(kredete, "ops", "slow-queries", "--top", "50", "--order", "mean", "--database",
                                  scratch.database, "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    sleepers = [r for r in rows if "pg_sleep" in r["statement"]]
    assert sleepers and sleepers[0]["mean_ms"] >= 200
    assert "secret-literal" not in out.stdout and "x-literal" not in out.stdout  # constants are $n


def test_ops_status_shows_the_tier_on_one_screen(monitoring):
    out = kredete("ops", "status")
    text = out.stdout
    for part in ("Stores", "Replication", "Disk", "Top statements", "kredete ops status"):
        assert part in text, part
    assert len(text.splitlines()) < 80
    as_json = kredete("ops", "status", "--json")
    body = json.loads(as_json.stdout)
    assert body["prometheus"] is True
    assert {s["store"] for s in body["stores"]} >= {"postgres", "postgres-replica", "redis", "mongo", "opensearch",
                                                     "s3"}
    # Exit status follows the verdict: non-zero exactly when something is critical. The same call's (a full
    # run failed comparing two calls: an MCP server another test had just stopped was firing TargetDown in the
    # second one only).
    assert (as_json.returncode != 0) == bool(body["critical"])
    assert ("CRITICAL" in text) == (out.returncode != 0)


def test_ops_status_without_prometheus_is_critical_not_green(monitoring):
    from kredete.stack.prometheus import PrometheusServer

    prom = PrometheusServer()
    prom.stop()
    try:
        out = kredete("ops", "status", "--json")
        body = json.loads(out.stdout)
        assert out.returncode == 1 and body["prometheus"] is False
        assert any("blind" in c for c in body["critical"])
        assert body["stores"] == []  # unknown, not healthy
    finally:
        prom.start()
        from kredete.stack.prometheus import targets_ready

        targets_ready(timeout=30)


async def test_opensearch_slow_log_thresholds_are_exported(scratch, monitoring):
    from stores.search import SearchStore

    search = await SearchStore(scratch.settings.opensearch_url.get_secret_value(), prefix="drill").connect()
    name = f"drill-slowlog-{scratch.id}"
    try:
        await search.call(search.os.indices.create(index=name, body={"settings": {
            "number_of_replicas": 0, "index.search.slowlog.threshold.query.warn": "2s",
            "index.search.slowlog.threshold.fetch.info": "300ms"}}))
        got = await wait_until(lambda: query(f'kredete_opensearch_search_slowlog_threshold_seconds{{index="{name}"}}'),
                               30, "slow-log thresholds scraped")
        values = {(m["phase"], m["level"]): v for m, v in got}
        assert values == {("query", "warn"): 2.0, ("fetch", "info"): 0.3}
    finally:
        await search.call(search.os.indices.delete(index=name))
        await search.close()


async def test_redis_keyspace_hit_ratio_is_recorded(monitoring):
    from config.settings import resolve
    from stores.cache import CacheStore

    cache = await CacheStore(resolve().redis_url.get_secret_value()).connect()
    try:
        await cache.set_json(cache.key("monitoring-probe"), {"x": 1}, 60)
        for _ in range(20):
            await cache.get_json(cache.key("monitoring-probe"))
            await cache.get_json(cache.key("monitoring-probe-missing"))
        got = await wait_until(lambda: query("kredete:redis_keyspace_hit_ratio:rate5m"), 30, "hit ratio recorded")
        assert all(0 <= v <= 1 for _m, v in got)
    finally:
        await cache.invalidate(cache.key("monitoring-probe"))
        await cache.close()


def test_a_reload_returns_once_alerts_can_be_sent_again(monitoring):
    """Prometheus rebuilds its Alertmanager list on every reload and is without one for 4-5 s: an alert that
    starts firing then is dropped and only sent again a minute later. The alert drills lost a notification to
    it in a full run (`prometheus_notifications_dropped_total` rose as the heap alert fired). A reload now
    returns once the notifier knows the Alertmanager again."""
    from kredete.stack.prometheus import PrometheusServer, api

    server = PrometheusServer()
    for _ in range(3):
        server.reload()
        known = api("/api/v1/alertmanagers")["activeAlertmanagers"]
        assert known, "the reload returned while Prometheus had no Alertmanager to send alerts to"
