"""Alert drills: cause each alert's condition for real on the local stack, then undo it.

Shared by the integration tests (the alert must reach Alertmanager and a webhook receiver) and by
`bench/monitoring.py` (how long after its `for:` each alert fires). Every drill works in scratch data of
its own (a `kredete_drill_<id>` database, a scratch Mongo database, `drill-*` indexes) and puts back what
it changed (replica running and replaying, thresholds, indexes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from config.paths import REPO_ROOT, local_dir
from config.ports import free_port
from config.settings import resolve

#: The monitoring profile drills run under (fast scrapes, short `for:`, thresholds a drill can reach).
TEST_PROFILE = {
    "KREDETE_MONITOR_SCRAPE_INTERVAL_S": "1",
    "KREDETE_MONITOR_EVALUATION_INTERVAL_S": "1",
    "KREDETE_MONITOR_FOR_CAP_S": "2",
    "KREDETE_MONITOR_GROUP_WAIT_S": "0.5",
    "KREDETE_MONITOR_GROUP_INTERVAL_S": "1",
    "KREDETE_ALERT_REPLICATION_LAG_BYTES": "1",
    "KREDETE_ALERT_REPLICATION_LAG_S": "1",
    "KREDETE_ALERT_OUTBOX_LAG_S": "2",
    "KREDETE_ALERT_SEARCH_SYNC_LAG_S": "2",
    # The machine's own disk must not decide the drills; the disk drill lowers these itself.
    "KREDETE_ALERT_DISK_USED_RATIO": "0.998",
    "KREDETE_ALERT_DISK_CRITICAL_RATIO": "0.999",
}


# --- the receiving end ------------------------------------------------------------------------------------
class WebhookReceiver:
    """Alertmanager's webhook target: records every notification with the time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append((time.time(), json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        # A scratch-range port (never 0: an ephemeral port can be taken by an outgoing connection again).
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def firing(self, alertname: str, labels: dict[str, str], since: float = 0.0,
               status: str = "firing") -> float | None:
        """Arrival time of the first notification (after `since`) with this alert in `status` (firing or
        resolved) and these labels."""
        with self._lock:
            for at, payload in self.received:
                if at < since:
                    continue
                for alert in payload.get("alerts", []):
                    got = alert.get("labels", {})
                    if (alert.get("status") == status and got.get("alertname") == alertname
                            and labels_match(got, labels)):
                        return at
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prometheus_alert(alertname: str, labels: dict[str, str], state: str = "firing") -> dict[str, Any] | None:
    from kredete.stack.prometheus import api

    for a in api("/api/v1/alerts")["alerts"]:
        got = a.get("labels", {})
        if a.get("state") == state and got.get("alertname") == alertname and labels_match(got, labels):
            return a
    return None


def alertmanager_alerts() -> list[dict[str, Any]]:
    """Alertmanager's active alerts (its v2 API); resolved ones are not listed."""
    import json
    import urllib.request

    from config import ports

    with urllib.request.urlopen(f"http://127.0.0.1:{ports.ALERTMANAGER}/api/v2/alerts", timeout=5) as resp:
        return json.loads(resp.read())


def alertmanager_holds(alertname: str, labels: dict[str, str]) -> bool:
    return any(a["labels"].get("alertname") == alertname and labels_match(a["labels"], labels)
               for a in alertmanager_alerts())


def alertmanager_view(alertname: str) -> list[dict[str, Any]]:
    """What Alertmanager holds of an alert (state, inhibited or silenced by what) and which alerts fire:
    the reason a fired alert did not reach the receiver."""
    try:
        alerts = alertmanager_alerts()
    except (OSError, ValueError) as exc:
        return [{"error": f"Alertmanager does not answer ({type(exc).__name__})"}]
    return [{"alertname": a["labels"].get("alertname"), "severity": a["labels"].get("severity"),
             "instance": a["labels"].get("instance"), "server": a["labels"].get("server"),
             "state": a.get("status", {}).get("state"), "inhibited_by": a.get("status", {}).get("inhibitedBy"),
             "mine": a["labels"].get("alertname") == alertname} for a in alerts]


def _notifications_dropped() -> float:
    """Alerts Prometheus failed to hand to any Alertmanager so far (its own counter, as last scraped)."""
    try:
        return sum(v for _, v in query("prometheus_notifications_dropped_total"))
    except Exception:  # a diagnostic for a failure message: never the failure itself
        return float("nan")


def _prometheus_state(alertname: str, labels: dict[str, str]) -> str:
    for state in ("firing", "pending"):
        with contextlib.suppress(Exception):
            if prometheus_alert(alertname, labels, state):
                return state
    return "inactive"


def labels_match(got: dict[str, str], want: dict[str, str]) -> bool:
    """Every wanted label equal, or containing the text after `~`."""
    return all(got.get(k, "") == v or (v.startswith("~") and v[1:] in got.get(k, "")) for k, v in want.items())


def query(expr: str) -> list[tuple[dict[str, str], float]]:
    from kredete.stack.prometheus import api

    data = api("/api/v1/query?query=" + urllib.parse.quote(expr))
    return [(r["metric"], float(r["value"][1])) for r in data["result"]]


async def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


# --- profile ------------------------------------------------------------------------------------------------
def apply_profile(env: dict[str, str | None]) -> None:
    """Set (or unset, None) monitoring variables and make Prometheus and Alertmanager reload them."""
    from config.monitoring import reset_monitoring_settings
    from kredete.stack.alertmanager import AlertmanagerServer
    from kredete.stack.prometheus import PrometheusServer

    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_monitoring_settings()
    AlertmanagerServer().start()
    PrometheusServer().start()


@contextlib.contextmanager
def profile(env: dict[str, str]):
    """Run with these monitoring variables, then put the previous ones back (and reload again)."""
    before = {k: os.environ.get(k) for k in env}
    apply_profile(dict(env))
    try:
        yield
    finally:
        apply_profile(before)


# --- drills ---------------------------------------------------------------------------------------------------
@dataclass
class Drill:
    """An alert and the labels that identify the firing caused here."""

    alert: str
    labels: dict[str, str]
    #: What was done, in words (for the report).
    condition: str
    #: When the condition was caused (time.time()); set by the drill.
    started: float = 0.0
    #: Seconds after `started` before the alert's expression can hold: a lag must first grow past its
    #: threshold (0 for a condition that holds at once).
    holds_after_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Scratch:
    """Scratch data the drills work in, made on first use and removed by `close()`."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(3)
        self.database = f"kredete_drill_{self.id}"
        self.settings = resolve()
        self._pg = None
        #: Helper processes by tag (a drill's collector, the search follower): started once, ended by close().
        self.procs: dict[str, tuple[subprocess.Popen, Any]] = {}
        self.ports: dict[str, int] = {}
        self.sync_db, self.sync_prefix = f"drill_sync_{self.id}", f"drill-sync-{self.id}"

    def url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        base = self.settings.postgres_url.get_secret_value()
        if user:
            rest = base.split("@", 1)[1]
            base = f"postgresql://{user}:{password}@{rest}"
        return base.rsplit("/", 1)[0] + "/" + database

    async def postgres(self):
        """A PostgresStore on the scratch database (created on first use, with a table to lock and write)."""
        from stores.postgres import PostgresStore

        if self._pg is None:
            admin = await PostgresStore(self.url("postgres")).connect()
            try:
                async with admin.connection() as conn:
                    await conn.execute(f"CREATE DATABASE {self.database}")
            finally:
                await admin.close()
            self._pg = await PostgresStore(self.url(self.database), max_size=4).connect()
            async with self._pg.connection() as conn:
                await conn.execute("CREATE TABLE drill (id int PRIMARY KEY, v text)")
                await conn.execute("INSERT INTO drill VALUES (1, 'a'), (2, 'b')")
        return self._pg

    def spawn(self, tag: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start a helper process once (its output in .local/drill-<tag>-<id>.log); the running one after."""
        if tag in self.procs and self.procs[tag][0].poll() is None:
            return self.procs[tag][0]
        log = open(local_dir() / f"drill-{tag}-{self.id}.log", "wb")  # noqa: SIM115 - closed by end()
        proc = subprocess.Popen(argv, env={**env, "PYTHONPATH": str(REPO_ROOT)}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[tag] = (proc, log)
        return proc

    def end(self, tag: str) -> None:
        """Stop a helper process (SIGCONT first: a frozen process cannot act on SIGTERM)."""
        import signal

        proc, log = self.procs.pop(tag, (None, None))
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()

    def collector(self, tag: str, env: dict[str, str]) -> int:
        """A collector of the drill's own (`--parts pipelines`, on the scratch settings in `env`); its port."""
        if tag not in self.ports:
            self.ports[tag] = free_port()  # scratch range, below the ephemeral ports
        self.spawn(f"collector-{tag}", [sys.executable, "-m", "kredete.ops.collector", "--port",
                                        str(self.ports[tag]), "--parts", "pipelines"], env)
        return self.ports[tag]

    def search_sync_env(self) -> dict[str, str]:
        return {**os.environ, "KREDETE_MONGO_DB": self.sync_db, "KREDETE_INDEX_PREFIX": self.sync_prefix}

    def warm_search_sync(self) -> None:
        """Start the search-sync drill's follower and collector now: the follower imports torch and loads its
        embedding model (most of a minute on a loaded machine), which then overlaps with other drills."""
        env = self.search_sync_env()
        self.spawn("follower", [sys.executable, "-c", "from kredete.cli import main; main()", "ingest", "--only",
                                "disputes", "--follow"], env)
        self.collector("search-sync", env)

    async def drop_search_sync(self) -> None:
        """The search-sync drill's scratch Mongo database and indexes (the follower creates them at start)."""
        from stores.mongo import MongoStore
        from stores.search import SearchStore

        search = await SearchStore(self.settings.opensearch_url.get_secret_value(), prefix=self.sync_prefix).connect()
        try:
            with contextlib.suppress(Exception):
                for name in await search.call(search.os.indices.get(index=f"{self.sync_prefix}-*")):
                    await search.call(search.os.indices.delete(index=name))
        finally:
            await search.close()
        mongo = await MongoStore(self.settings.mongo_url.get_secret_value(), self.sync_db).connect()
        try:
            with contextlib.suppress(Exception):
                await mongo.client.drop_database(self.sync_db)
        finally:
            await mongo.close()

    async def close(self) -> None:
        from stores.postgres import PostgresStore

        synced = "follower" in self.procs
        for tag in list(self.procs):
            await asyncio.to_thread(self.end, tag)
        if synced:
            await self.drop_search_sync()
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
            admin = await PostgresStore(self.url("postgres")).connect()
            try:
                async with admin.connection() as conn:
                    await conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            finally:
                await admin.close()


def fast_stop(server) -> None:
    """Stop PostgreSQL with a fast shutdown (SIGINT: clients disconnected, clean checkpoint); the stack's own
    stop sends SIGTERM, a smart shutdown that waits for connected clients such as its exporter."""
    import signal

    pid = server.pid()
    if pid:
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while server.pid() and time.monotonic() < deadline:
            time.sleep(0.1)
    server.stop()  # whatever is left, and the pid file


def _replica():
    from kredete.stack.postgres import PostgresPrimary, PostgresReplica

    return PostgresReplica(PostgresPrimary())


@contextlib.asynccontextmanager
async def replica_down(scratch: Scratch) -> AsyncIterator[Drill]:
    """Stop the replica's server process; start it again afterwards."""
    replica = _replica()
    drill = Drill("PostgresReplicaDown", {"server": replica.name}, "replica stopped (fast shutdown, SIGINT)")
    await asyncio.to_thread(fast_stop, replica)
    drill.started = time.time()
    try:
        yield drill
    finally:
        await asyncio.to_thread(replica.start)


@contextlib.asynccontextmanager
async def replica_lag(scratch: Scratch, alert: str = "ReplicationLagSeconds") -> AsyncIterator[Drill]:
    """Stop the replica replaying WAL (`pg_wal_replay_pause()`) while the primary keeps writing."""
    from stores.postgres import PostgresStore

    replica = _replica()
    pg = await scratch.postgres()
    # Bytes are measured on the primary, per standby (its application_name is the replica's cluster_name).
    labels = {"server": replica.name} if alert == "ReplicationLagSeconds" else {"application_name": replica.name}
    drill = Drill(alert, labels, "replay paused on the replica (pg_wal_replay_pause) while the primary writes")
    standby = await PostgresStore(replica.url().rsplit("/", 1)[0] + "/postgres").connect()
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            async with pg.connection() as conn:
                await conn.execute("UPDATE drill SET v = $1 WHERE id = 1", f"w{n}")
            await asyncio.sleep(0.2)

    async def streaming_and_caught_up() -> bool:
        # A replica just restarted (the replica_down drill) may not stream yet: paused then, it receives
        # nothing and shows no lag. A transaction of ours replayed there, while streaming, proves both.
        async with pg.connection() as conn:
            await conn.execute("UPDATE drill SET v = 'sync' WHERE id = 2")
            lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        async with standby.connection() as conn:
            return bool(await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
                " AND pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
                " AND pg_last_xact_replay_timestamp() IS NOT NULL", lsn))

    try:
        deadline = time.monotonic() + 60
        while not await streaming_and_caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not stream and catch up within 60 s")
            await asyncio.sleep(0.5)
        async with standby.connection() as conn:
            await conn.execute("SELECT pg_wal_replay_pause()")
        task = asyncio.create_task(writer())
        drill.started = time.time()
        try:
            yield drill
        finally:
            stop.set()
            await task
    finally:
        async with standby.connection() as conn:
            await conn.execute("SELECT pg_wal_replay_resume()")
        await standby.close()


@contextlib.asynccontextmanager
async def deadlock(scratch: Scratch) -> AsyncIterator[Drill]:
    """Two transactions that lock rows 1 and 2 in opposite orders: PostgreSQL kills one (deadlock_timeout)."""
    pg = await scratch.postgres()
    drill = Drill("PostgresDeadlocks", {"datname": scratch.database}, "two transactions locking two rows in "
                  "opposite orders")
    # The counter's series must be known to Prometheus before it moves, or increase() sees no change.
    await wait_until(lambda: query(f'pg_stat_database_deadlocks{{datname="{scratch.database}"}}'), 60,
                     "the scratch database's deadlock counter in Prometheus")
    first_locked, second_locked = asyncio.Event(), asyncio.Event()
    errors: list[str] = []

    async def tx(mine: int, other: int, locked: asyncio.Event, wait_for: asyncio.Event) -> None:
        try:
            async with pg.transaction() as conn:
                await conn.execute("UPDATE drill SET v = v WHERE id = $1", mine)
                locked.set()
                await wait_for.wait()
                await conn.execute("UPDATE drill SET v = v WHERE id = $1", other)
        except Exception as exc:
            errors.append(type(exc.__cause__ or exc).__name__)

    await asyncio.gather(tx(1, 2, first_locked, second_locked), tx(2, 1, second_locked, first_locked))
    drill.started = time.time()
    drill.extra["errors"] = errors
    if not any("Deadlock" in e for e in errors):
        raise RuntimeError(f"no deadlock detected (errors: {errors})")
    yield drill


@contextlib.asynccontextmanager
async def slow_statement(scratch: Scratch) -> AsyncIterator[Drill]:
    """One statement sleeping past the slow-statement threshold."""
    from config.monitoring import monitoring_settings

    pg = await scratch.postgres()
    seconds = monitoring_settings().alert_slow_query_s + 0.3
    drill = Drill("PostgresSlowStatement", {"datname": scratch.database, "statement": "~pg_sleep"},
                  f"SELECT pg_sleep({seconds:g}) (threshold {monitoring_settings().alert_slow_query_s:g} s)")
    async with pg.connection() as conn:
        await conn.execute(f"SELECT pg_sleep({seconds}) FROM (VALUES ('drill')) AS probe(name)")
    drill.started = time.time()
    yield drill


@contextlib.asynccontextmanager
async def disk_threshold(scratch: Scratch) -> AsyncIterator[Drill]:
    """Lower KREDETE_ALERT_DISK_USED_RATIO under the filesystem's current use (then put it back)."""
    used = max(v for _m, v in query("kredete_fs_used_ratio"))
    low = max(0.0001, round(used / 2, 4))
    drill = Drill("DiskUsageHigh", {}, f"KREDETE_ALERT_DISK_USED_RATIO lowered to {low} (filesystem {used:.1%} used)")
    before = os.environ.get("KREDETE_ALERT_DISK_USED_RATIO")
    await asyncio.to_thread(apply_profile, {"KREDETE_ALERT_DISK_USED_RATIO": str(low)})
    drill.started = time.time()
    try:
        yield drill
    finally:
        await asyncio.to_thread(apply_profile, {"KREDETE_ALERT_DISK_USED_RATIO": before})


@contextlib.asynccontextmanager
async def pool_exhausted(scratch: Scratch) -> AsyncIterator[Drill]:
    """A pool of 2 connections, both held, and a third caller waiting; its process scraped by Prometheus."""
    from prometheus_client import start_http_server

    from config.secrets import local_secrets
    from kredete.stack.exporters import MONITOR_ROLE
    from kredete.stack.prometheus import announce_metrics
    from stores.postgres import PostgresStore

    await scratch.postgres()
    url = scratch.url(scratch.database, MONITOR_ROLE, local_secrets()["postgres_exporter"])
    pool = await PostgresStore(url, max_size=2, min_size=0, timeout=120).connect()
    server, _thread = start_http_server(0, addr="127.0.0.1")
    port = server.server_port
    drill = Drill("PoolSaturated", {"instance": f"127.0.0.1:{port}", "pool": f"postgres:{MONITOR_ROLE}:primary"},
                  "asyncpg pool of 2: both connections held, a third acquire waiting")
    release = asyncio.Event()
    holding: list[asyncio.Event] = []

    async def hold() -> None:
        got = asyncio.Event()
        holding.append(got)
        async with pool.connection():
            got.set()
            await release.wait()

    try:
        with announce_metrics("127.0.0.1", port, job="app", labels={"drill": "pool"}):
            tasks = [asyncio.create_task(hold()) for _ in range(3)]
            await wait_until(lambda: sum(e.is_set() for e in holding) == 2, 30, "two connections held")
            drill.started = time.time()
            try:
                yield drill
            finally:
                release.set()
                await asyncio.gather(*tasks)
    finally:
        await pool.close()
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def opensearch_health(scratch: Scratch, colour: str = "red") -> AsyncIterator[Drill]:
    """An index that cannot be allocated: replicas with no node to hold them (yellow), or its primary
    required on a node that does not exist (red)."""
    from stores.search import SearchStore

    search = await SearchStore(scratch.settings.opensearch_url.get_secret_value(), prefix="drill").connect()
    name = f"drill-{colour}-{scratch.id}"
    health = await search.call(search.os.cluster.health())
    if colour == "yellow":
        body = {"settings": {"number_of_shards": 1, "number_of_replicas": int(health["number_of_data_nodes"])}}
        drill = Drill("OpenSearchClusterYellow", {}, f"index {name} with more replicas than data nodes")
    else:
        body = {"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                             "index.routing.allocation.require._name": f"no-such-node-{scratch.id}"}}
        drill = Drill("OpenSearchClusterRed", {}, f"index {name} whose primary must live on a node that does not exist")
    try:
        await search.call(search.os.indices.create(index=name, body=body, params={"wait_for_active_shards": "0"}))
        drill.started = time.time()
        yield drill
    finally:
        with contextlib.suppress(Exception):
            await search.call(search.os.indices.delete(index=name))
        await search.close()


def full_gc(pid: int) -> None:
    """A full collection of a local JVM with the JDK's own `jcmd <pid> GC.run` (the jcmd next to the java it
    runs): afterwards its old generation holds only live objects."""
    jcmd = Path(os.readlink(f"/proc/{pid}/exe")).parent / "jcmd"
    subprocess.run([str(jcmd), str(pid), "GC.run"], check=True, capture_output=True, timeout=120)


async def _old_generation(search, pid: int) -> tuple[str, int, int]:
    """(node name, old-generation bytes in use, heap maximum) of the OpenSearch node running as `pid`."""
    info = await search.call(search.os.nodes.info(metric="process"))
    ids = [nid for nid, n in info["nodes"].items() if int(n.get("process", {}).get("id", -1)) == pid]
    if not ids:
        raise RuntimeError(f"no OpenSearch node runs as pid {pid}")
    n = (await search.call(search.os.nodes.stats(node_id=ids[0], metric="jvm")))["nodes"][ids[0]]
    mem = n["jvm"]["mem"]
    return n["name"], int(mem["pools"]["old"]["used_in_bytes"]), int(mem["heap_max_in_bytes"])


@contextlib.asynccontextmanager
async def opensearch_heap(scratch: Scratch, docs: int = 300, chars: int = 1000) -> AsyncIterator[Drill]:
    """Real memory pressure on the local stack's OpenSearch node. A full collection first (`jcmd GC.run`), so
    the old generation holds only live objects; the threshold (KREDETE_ALERT_OPENSEARCH_HEAP_RATIO) is set 4 %
    of the heap above that, and the alert is seen not to hold; then a scratch index of random text analysed
    into 4- to 12-character n-grams (about 9 terms per character, nearly all distinct) gets a terms
    aggregation on a `fielddata: true` field, which loads every term into the heap and keeps it there; a
    second full collection then moves it into the old generation (about 40 MB for the default 300 documents
    of 1,000 characters: more than the 4 % margin, ~20 MB of a 512 MB heap). The index is deleted, the
    threshold put back and the node collected again afterwards."""
    import random
    import string

    from kredete.stack.opensearch import OpenSearchServer
    from stores.search import SearchStore

    pid = OpenSearchServer().pid()
    if not pid:
        raise RuntimeError("the heap drill needs the local stack's OpenSearch node running")
    # A loaded node takes its time to analyse the n-grams: a bulk of 100 documents can take 10 s.
    search = await SearchStore(scratch.settings.opensearch_url.get_secret_value(), prefix="drill",
                               timeout=120).connect()
    name = f"drill-heap-{scratch.id}"
    before = os.environ.get("KREDETE_ALERT_OPENSEARCH_HEAP_RATIO")
    try:
        # Not holding before the load: the new threshold in force, and the node's pressure scraped under it
        # after another collection (garbage promoted while Prometheus reloads can fill the margin on a busy
        # node). A node that has only just started still grows its live set (caches, plugins): then the
        # baseline is measured again, up to three times.
        for attempt in range(3):
            await asyncio.to_thread(full_gc, pid)
            node, old, heap = await _old_generation(search, pid)
            threshold = round(old / heap + 0.04, 4)
            await asyncio.to_thread(apply_profile, {"KREDETE_ALERT_OPENSEARCH_HEAP_RATIO": str(threshold)})
            in_force = f'kredete_alert_threshold{{threshold="opensearch_heap_ratio"}} == {threshold}'
            await wait_until(lambda expr=in_force: query(expr), 60, "the lowered heap threshold in force")
            await asyncio.to_thread(full_gc, pid)
            under = (f'kredete_opensearch_node_heap_old_used_bytes{{node="{node}"}}'
                     f' / kredete_opensearch_node_heap_max_bytes{{node="{node}"}} < {threshold}')
            try:
                await wait_until(lambda expr=under: query(expr), 10,
                                 f"the node's pressure scraped under the lowered threshold {threshold:.1%}")
                break
            except TimeoutError:
                if attempt == 2:
                    raise
        drill = Drill("OpenSearchHeapHigh", {"node": node}, "", extra={"baseline_attempts": attempt + 1})
        # A baseline measured too low can have made the alert fire and reach the webhook already: it must
        # have cleared everywhere, or the load's firing would be the one Alertmanager already told. Its
        # resolution can take a minute to arrive: sent while Prometheus reloaded (4-5 s without an
        # Alertmanager), it was dropped, and Prometheus sends it again after its resend delay (1 min).
        await wait_cleared(drill.alert, drill.labels, 120, "before the load")
        await search.call(search.os.indices.create(index=name, body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "index.max_ngram_diff": 8,
                         "analysis": {"tokenizer": {"grams": {"type": "ngram", "min_gram": 4, "max_gram": 12,
                                                              "token_chars": ["letter", "digit"]}},
                                      "analyzer": {"grams": {"type": "custom", "tokenizer": "grams"}}}},
            "mappings": {"properties": {"t": {"type": "text", "analyzer": "grams", "fielddata": True}}}}))
        drill.condition = (f"fielddata of {docs} random {chars}-character texts in 4-12-grams loaded into the heap; "
                           f"threshold {threshold:.1%} = old generation after a full GC ({old / heap:.1%}) + 4 %")

        async def retried(make: Callable[[], Any]) -> Any:
            """A request the node refuses with 429 (its parent circuit breaker: the heap is nearly full, most
            of it garbage not yet collected) is sent again, as a client does: the pressure is the point here."""
            from stores.errors import StoreUnavailable

            for attempt in range(20):
                try:
                    return await search.call(make())
                except StoreUnavailable as exc:
                    if "429" not in str(exc) or attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
            return None

        async def load() -> None:
            rng = random.Random(scratch.id)
            alphabet = string.ascii_lowercase + string.digits
            for first in range(0, docs, 100):
                lines = []
                for i in range(first, min(docs, first + 100)):
                    text = "".join(rng.choices(alphabet, k=chars))
                    lines += [json.dumps({"index": {"_id": str(i)}}), json.dumps({"t": text})]
                body = "\n".join(lines) + "\n"
                res = await retried(lambda body=body: search.os.bulk(body=body, index=name))
                if res.get("errors"):
                    raise RuntimeError(f"bulk load of {name} failed")
            await retried(lambda: search.os.indices.refresh(index=name))
            await retried(lambda: search.os.search(index=name, body={"size": 0,
                                                                     "aggs": {"t": {"terms": {"field": "t"}}}}))
            # Fielddata just loaded sits in the young generation until it has outlived enough young collections,
            # and an idle node runs few: the pressure could stay under the threshold while the fielddata is held
            # (seen in a full test run: it fired on the indexing's garbage, fell back once that was collected
            # and stayed under). A full collection moves every live object into the old generation.
            await asyncio.to_thread(full_gc, pid)
            stats = await search.call(search.os.nodes.stats(metric="breaker"))
            drill.extra["fielddata_bytes"] = sum(n["breakers"]["fielddata"]["estimated_size_in_bytes"]
                                                 for n in stats["nodes"].values())
            drill.extra["load_s"] = time.time() - drill.started

        async def crossing() -> None:
            """When the node's pressure first passed the threshold, read from the node itself (for the bench:
            the condition holds from then, not from the start of the load)."""
            from stores.errors import StoreUnavailable

            while True:
                try:
                    _node, used, total = await _old_generation(search, pid)
                except StoreUnavailable:  # a 429 of the breaker: look again
                    await asyncio.sleep(0.2)
                    continue
                if used / total > threshold:
                    drill.holds_after_s = time.time() - drill.started
                    return
                await asyncio.sleep(0.2)

        # The clock starts with the load, which goes on while the caller waits for the alert: indexing the
        # n-grams already fills the old generation, and the alert can fire before the aggregation returns.
        drill.started = time.time()
        loading, watching = asyncio.create_task(load()), asyncio.create_task(crossing())
        try:
            yield drill
        finally:
            for task in (loading, watching):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if loading.done() and not loading.cancelled() and loading.exception() is not None:
                raise RuntimeError("the heap drill's load failed") from loading.exception()
    finally:
        with contextlib.suppress(Exception):
            await search.call(search.os.indices.delete(index=name))
        await search.close()
        await asyncio.to_thread(apply_profile, {"KREDETE_ALERT_OPENSEARCH_HEAP_RATIO": before})
        with contextlib.suppress(Exception):
            await asyncio.to_thread(full_gc, pid)


@contextlib.asynccontextmanager
async def patroni_leader_killed(scratch: Scratch) -> AsyncIterator[Drill]:
    """HA profile only: kill -9 the Patroni leader (Patroni and its PostgreSQL, as `kredete drill failover`
    does); the synchronous standby is promoted on a new timeline. The killed member is started again at the end
    and rejoins as a replica."""
    from kredete import stack
    from kredete.drills.failover import _kill_member
    from kredete.stack import patroni

    if stack.profile() != "ha":
        raise RuntimeError("the leader-change drill needs the HA profile (`kredete stack up --profile ha`)")
    lead = await asyncio.to_thread(patroni.leader)
    if not lead:
        raise RuntimeError("no Patroni leader to kill")
    victim = {s.name: s for s in stack.local_servers()}[lead["name"]]
    drill = Drill("PatroniLeaderChanged", {"scope": patroni.SCOPE},
                  f"kill -9 of the Patroni leader {victim.name} (Patroni and its PostgreSQL)")
    await asyncio.to_thread(_kill_member, victim)
    drill.started = time.time()
    try:
        new = await asyncio.to_thread(patroni.wait_for, lambda: (lambda m: m if m and m["name"] != victim.name
                                                                 else None)(patroni.leader()), "no new leader", 120)
        drill.holds_after_s = time.time() - drill.started  # the promotion: a new timeline from then
        drill.extra["new_leader"] = new["name"]
        yield drill
    finally:
        await asyncio.to_thread(victim.start)


@contextlib.asynccontextmanager
async def drill_collector(scratch: Scratch, env: dict[str, str], tag: str) -> AsyncIterator[int]:
    """The drill's own collector (Scratch.collector), announced to Prometheus and scraped once before the
    block runs: the time a drill measures is its alert's, not target discovery's. Yields its port."""
    from kredete.stack.prometheus import announce_metrics

    port = scratch.collector(tag, env)
    await wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), 120, "the drill's collector")
    with announce_metrics("127.0.0.1", port, job="app",
                          labels={"__metrics_path__": "/metrics/pipelines", "drill": tag}):
        await wait_until(lambda: query(f'up{{job="app", instance="127.0.0.1:{port}"}} == 1'), 60,
                         "the drill's collector scraped")
        yield port


@contextlib.asynccontextmanager
async def outbox_consumer_stopped(scratch: Scratch) -> AsyncIterator[Drill]:
    """A consumer that kept up with the outbox is stopped; events keep arriving. Observed by a collector
    of its own on a scratch Mongo database (so the dev data and its consumers are left alone)."""
    from config.monitoring import monitoring_settings
    from stores.mongo import MongoStore
    from stores.mongo.cdc import Outbox, OutboxConsumer

    db_name = f"drill_{scratch.id}"
    mongo = await MongoStore(scratch.settings.mongo_url.get_secret_value(), db_name).connect()
    consumer_name = f"drill-{scratch.id}"
    drill = Drill("OutboxConsumerLag", {"consumer": consumer_name, "database": db_name},
                  "an outbox consumer that had caught up is stopped while events keep being emitted")
    outbox = Outbox(mongo.db)
    consumer = OutboxConsumer(mongo.db, consumer_name)
    stop = asyncio.Event()

    async def handle(_events: list) -> None:  # the consumer's work is not what is observed here
        return

    try:
        async with drill_collector(scratch, {**os.environ, "KREDETE_MONGO_DB": db_name}, "outbox"):
            running = asyncio.create_task(consumer.run(handle, stop=stop, interval=0.1))
            await outbox.emit("dispute_cases", "update", "d-0", None, {"drill": True}, event_id=f"drill:{scratch.id}:0")

            async def caught_up() -> None:
                while await consumer.checkpoint() < 1:  # noqa: ASYNC110 - polling another process's state
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(caught_up(), 30)
            stop.set()
            await running  # stopped here, caught up
            for i in range(1, 4):
                await outbox.emit("dispute_cases", "update", f"d-{i}", None, {"drill": True},
                                  event_id=f"drill:{scratch.id}:{i}")
            drill.started = time.time()
            drill.holds_after_s = monitoring_settings().alert_outbox_lag_s
            yield drill
    finally:
        await asyncio.to_thread(scratch.end, "collector-outbox")
        with contextlib.suppress(Exception):
            await mongo.client.drop_database(db_name)
        await mongo.close()


@contextlib.asynccontextmanager
async def search_sync_stopped(scratch: Scratch) -> AsyncIterator[Drill]:
    """The credit-store search follower (`kredete ingest --only disputes --follow`: outbox -> OpenSearch) is
    frozen with SIGSTOP once it has caught up, and disputes are written through the credit store's repository
    meanwhile; `drill.extra["resume"]()` thaws it (SIGCONT), and it catches up. Runs on a scratch Mongo
    database and index prefix, with a collector of its own (the dev data and indexes are left alone); the
    follower is started by `Scratch.warm_search_sync()` (early, when the caller can) or here."""
    import signal
    import uuid

    from config.monitoring import monitoring_settings
    from retrieval.changes import FEED_NAME
    from stores.mongo import MongoStore
    from stores.mongo.cdc import OutboxConsumer
    from stores.mongo.credit import DisputeRepository
    from stores.mongo.documents import Dispute

    scratch.warm_search_sync()
    proc = scratch.procs["follower"][0]
    db_name = scratch.sync_db
    mongo = await MongoStore(scratch.settings.mongo_url.get_secret_value(), db_name).connect()
    disputes = DisputeRepository(mongo.db)
    follower = OutboxConsumer(mongo.db, FEED_NAME)  # only to read its checkpoint
    drill = Drill("SearchSyncLag", {"index": "disputes", "feed": "outbox", "database": db_name},
                  "the credit-store search follower frozen (SIGSTOP) while disputes are written")

    async def write(n: int) -> None:
        for _ in range(n):
            await disputes.create(Dispute(user_id=str(uuid.uuid4()), report_id=str(uuid.uuid4()), bureau="crc_ng",
                                          reason="incorrect_balance"))

    async def caught_up() -> bool:
        last = await mongo.db["outbox_events"].find_one({}, {"seq": 1}, sort=[("seq", -1)])
        return await follower.checkpoint() >= int(last["seq"] if last else 0) > 0

    async def resume() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)

    drill.extra["resume"] = resume
    try:
        async with drill_collector(scratch, scratch.search_sync_env(), "search-sync"):
            await write(1)
            deadline = time.monotonic() + 150  # importing torch, loading the embedding model, making the indexes
            while not await caught_up():
                if proc.poll() is not None:
                    raise RuntimeError(f"the follower exited ({proc.returncode}); see .local/drill-follower-*.log")
                if time.monotonic() > deadline:
                    raise TimeoutError("the follower did not apply the first dispute within 150 s")
                await asyncio.sleep(0.25)
            # Its lag seen at 0 first: the alert's clock starts from a follower known to be caught up.
            await wait_until(lambda: query(f'kredete_search_sync_lag_seconds{{database="{db_name}", '
                                           f'index="disputes"}} == 0'), 60, "the follower's lag scraped at 0")
            os.kill(proc.pid, signal.SIGSTOP)
            await write(3)
            drill.started = time.time()
            drill.holds_after_s = monitoring_settings().alert_search_sync_lag_s
            yield drill
    finally:
        await resume()
        await mongo.close()
        await asyncio.to_thread(scratch.end, "follower")
        await asyncio.to_thread(scratch.end, "collector-search-sync")
        await scratch.drop_search_sync()


def _http_ok(url: str) -> bool:
    from kredete.stack.exporters import http_ok

    return http_ok(url)


DRILLS: dict[str, Callable[[Scratch], Any]] = {
    "replica_down": replica_down,
    "replication_lag_seconds": lambda s: replica_lag(s, "ReplicationLagSeconds"),
    "replication_lag_bytes": lambda s: replica_lag(s, "ReplicationLagBytes"),
    "deadlock": deadlock,
    "slow_statement": slow_statement,
    "disk_usage": disk_threshold,
    "pool_saturated": pool_exhausted,
    "opensearch_yellow": lambda s: opensearch_health(s, "yellow"),
    "opensearch_red": lambda s: opensearch_health(s, "red"),
    "outbox_consumer_lag": outbox_consumer_stopped,
    "search_sync_lag": search_sync_stopped,
    "opensearch_heap": opensearch_heap,
}


#: Drills of the HA profile's stack only (`kredete stack up --profile ha`).
HA_DRILLS: dict[str, Callable[[Scratch], Any]] = {
    "patroni_leader_change": patroni_leader_killed,
}


#: The alert each drill causes and the labels known before it runs (to wait for an earlier one to clear).
CLEARS: dict[str, Callable[[Scratch], tuple[str, dict[str, str]]]] = {
    "replica_down": lambda s: ("PostgresReplicaDown", {"server": "postgres-replica"}),
    "replication_lag_seconds": lambda s: ("ReplicationLagSeconds", {"server": "postgres-replica"}),
    "replication_lag_bytes": lambda s: ("ReplicationLagBytes", {"application_name": "postgres-replica"}),
    "deadlock": lambda s: ("PostgresDeadlocks", {"datname": s.database}),
    "slow_statement": lambda s: ("PostgresSlowStatement", {"datname": s.database, "statement": "~pg_sleep"}),
    "disk_usage": lambda s: ("DiskUsageHigh", {}),
    "pool_saturated": lambda s: ("PoolSaturated", {"pool": "postgres:kredete_monitor:primary"}),
    "opensearch_yellow": lambda s: ("OpenSearchClusterYellow", {}),
    "opensearch_red": lambda s: ("OpenSearchClusterRed", {}),
    "outbox_consumer_lag": lambda s: ("OutboxConsumerLag", {"database": f"drill_{s.id}"}),
    "search_sync_lag": lambda s: ("SearchSyncLag", {"database": f"drill_sync_{s.id}"}),
    "opensearch_heap": lambda s: ("OpenSearchHeapHigh", {}),
    "patroni_leader_change": lambda s: ("PatroniLeaderChanged", {}),
}


@dataclass
class Firing:
    """How one drill went: when the condition started, when Prometheus fired, when the webhook got it."""

    drill: str
    alert: str
    condition: str
    for_s: float
    prometheus_s: float
    webhook_s: float
    #: Seconds after the condition was caused before the expression could hold (a lag's threshold).
    holds_after_s: float = 0.0


def rule_for(alert: str) -> float:
    """The `for:` the running Prometheus evaluates for this alert (capped by the profile)."""
    from kredete.stack.prometheus import api

    for group in api("/api/v1/rules?type=alert")["groups"]:
        for rule in group["rules"]:
            if rule["name"] == alert:
                return float(rule.get("duration", 0))
    raise KeyError(alert)


async def wait_cleared(alertname: str, labels: dict[str, str], timeout: float, when: str) -> None:
    """Wait until the alert is neither pending nor firing in Prometheus, and cleared in Alertmanager with its
    resolution notified (one group interval): an alert that resolves and fires again between two flushes of
    its group is, to Alertmanager, the same firing it already notified, and it waits out repeat_interval (4 h)
    before telling again (the disk alert fires for real on a disk that is 90 % used before the drills' profile
    raises its threshold)."""
    await wait_until(lambda: not (prometheus_alert(alertname, labels)
                                  or prometheus_alert(alertname, labels, "pending")),
                     timeout, f"{alertname} to clear {when}")
    await wait_until(lambda: not alertmanager_holds(alertname, labels), timeout,
                     f"{alertname} to clear in Alertmanager {when}")
    await asyncio.sleep(2 * float(TEST_PROFILE["KREDETE_MONITOR_GROUP_INTERVAL_S"]))


async def run_drill(name: str, scratch: Scratch, receiver: WebhookReceiver, timeout: float = 120,
                    then: Callable[[Drill], Awaitable[None]] | None = None) -> Firing:
    """Cause the condition, wait until Prometheus fires the alert and the webhook receives it; run `then`
    (still inside the drill, e.g. to put the condition right and watch the alert clear); undo.

    A drill starts once its alert is neither pending nor firing (a previous drill's condition has cleared),
    so the time measured is this condition's.
    """
    alertname, labels = CLEARS[name](scratch)
    await wait_cleared(alertname, labels, timeout, "before the drill")
    async with {**DRILLS, **HA_DRILLS}[name](scratch) as drill:
        for_s = rule_for(drill.alert)
        dropped = _notifications_dropped()
        await wait_until(lambda: prometheus_alert(drill.alert, drill.labels), timeout,
                                 f"{drill.alert} {drill.labels} firing in Prometheus", every=0.1)
        fired_at = time.time()
        try:
            got = await wait_until(lambda: receiver.firing(drill.alert, drill.labels, since=drill.started), timeout,
                                   f"{drill.alert} {drill.labels} at the webhook", every=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; Prometheus dropped {_notifications_dropped() - dropped:.0f} notifications "
                               f"since the drill began; it now shows the alert "
                               f"{_prometheus_state(drill.alert, drill.labels)}; "
                               f"Alertmanager has: {alertmanager_view(drill.alert)}") from None
        if then is not None:
            await then(drill)
    return Firing(drill=name, alert=drill.alert, condition=drill.condition, for_s=for_s,
                  prometheus_s=fired_at - drill.started, webhook_s=got - drill.started,
                  holds_after_s=drill.holds_after_s)
