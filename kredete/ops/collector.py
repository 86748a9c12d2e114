"""The kredete collector: the stores' metrics no Debian exporter reads, as Prometheus endpoints.

    python -m kredete.ops.collector --port 23130 --state-dir .local/collector

* `/metrics/opensearch`: cluster status, shards, node heap/disk/search/indexing, per-index documents, size,
  health and search slow-log thresholds. Answers 503 when the cluster does not, so Prometheus shows the
  OpenSearch target down instead of old numbers.
* `/metrics/storage`: disk per store data dir (bytes under it, and the filesystem holding it), bytes and
  objects per bucket. Walking data dirs and listing buckets is done every KREDETE_MONITOR_STORAGE_REFRESH_S
  in the background; a part that failed its last refresh is left out (and `kredete_collector_part_up` 0).
* `/metrics/pipelines`: outbox consumer lag (events and seconds), search-sync lag of the Postgres-fed
  indexes and of the ones the credit-store follower keeps, last successful backup per pgBackRest stanza.
* `/metrics`: the collector's own process; `/healthz`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from config.monitoring import MonitoringSettings, load_monitoring_settings
from config.settings import Settings, resolve

log = logging.getLogger("kredete.collector")
STATUS = {"green": 0, "yellow": 1, "red": 2}


class PartDown(Exception):
    """The store behind an endpoint did not answer: the endpoint answers 503."""


def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def data_dir_usage(path: Path) -> int:
    """Bytes the files under `path` occupy on disk (allocated blocks, like `du`); 0 when absent."""
    total = 0
    for root, _dirs, files in os.walk(path, onerror=lambda _e: None):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path`."""
    path = path.resolve()
    dev = os.stat(path).st_dev
    while path.parent != path and os.stat(path.parent).st_dev == dev:
        path = path.parent
    return path


def fs_usage(path: Path) -> tuple[int, int, float]:
    """(size, available, used ratio) of the filesystem holding `path`, as `df` counts them."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    return st.f_blocks * st.f_frsize, avail, (used / (used + avail)) if used + avail else 0.0


class State:
    """Connected adapters (made lazily, re-made after a failure) and the background refresh results."""

    def __init__(self, settings: Settings, monitor: MonitoringSettings, data_dirs: dict[str, Path]) -> None:
        self.settings = settings
        self.monitor = monitor
        self.data_dirs = data_dirs
        self.stores: dict[str, Any] = {}
        self.storage: dict[str, Any] = {}  # part -> (timestamp, value) or (timestamp, None) when it failed
        self.lock = threading.Lock()

    async def store(self, kind: str) -> Any:
        if kind in self.stores:
            return self.stores[kind]
        from stores.registry import connect

        which = {"postgres": "postgres", "mongo": "mongo", "search": "search", "objects": "objects"}[kind]
        stores = await connect((which,), settings=self.settings)
        self.stores[kind] = getattr(stores, which)
        return self.stores[kind]

    async def forget(self, kind: str) -> None:
        store = self.stores.pop(kind, None)
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()


# --- OpenSearch ------------------------------------------------------------------------------------------
async def opensearch_families(state: State) -> list[Any]:
    from stores.errors import StoreError
    from stores.monitoring.search import SearchStats

    try:
        stats = await SearchStats(await state.store("search")).cluster()
    except StoreError as exc:
        await state.forget("search")
        raise PartDown(f"OpenSearch does not answer: {exc}") from exc
    c = stats.cluster
    fams: list[Any] = []
    status = gauge("kredete_opensearch_cluster_status", "Cluster health: 0 green, 1 yellow (replicas unassigned), "
                   "2 red (a primary unassigned)", ["cluster"])
    status.add_metric([c], STATUS.get(stats.status, 2))
    nodes = gauge("kredete_opensearch_cluster_nodes", "Nodes in the cluster", ["cluster", "kind"])
    nodes.add_metric([c, "all"], stats.nodes)
    nodes.add_metric([c, "data"], stats.data_nodes)
    shards = gauge("kredete_opensearch_shards", "Shards by state", ["cluster", "state"])
    for k, v in stats.shards.items():
        shards.add_metric([c, k], v)
    fams += [status, nodes, shards]
    node_g = {f: gauge(f"kredete_opensearch_node_{f}", doc, ["node"]) for f, doc in (
        ("heap_used_bytes", "JVM heap in use (young generation's garbage included)"),
        ("heap_max_bytes", "JVM heap maximum"),
        ("heap_old_used_bytes", "JVM old-generation pool in use (what outlived young collections): over "
                                "heap_max_bytes, the node's memory pressure"),
        ("fs_total_bytes", "Size of the node's data filesystem"),
        ("fs_available_bytes", "Free space of the node's data filesystem"),
        ("documents", "Documents on the node (primaries and replicas)"),
        ("store_bytes", "Index data on the node"))}
    node_c = {f: CounterMetricFamily(f"kredete_opensearch_node_{f}", doc, labels=["node"]) for f, doc in (
        ("search_queries", "Search query phases executed"), ("search_query_seconds", "Time in search query phases"),
        ("indexing", "Documents indexed"), ("indexing_seconds", "Time spent indexing"))}
    for n in stats.nodes_stats:
        for f, fam in node_g.items():
            fam.add_metric([n.node], getattr(n, f))
        node_c["search_queries"].add_metric([n.node], n.query_total)
        node_c["search_query_seconds"].add_metric([n.node], n.query_seconds)
        node_c["indexing"].add_metric([n.node], n.index_total)
        node_c["indexing_seconds"].add_metric([n.node], n.index_seconds)
    fams += [*node_g.values(), *node_c.values()]
    idx = {f: gauge(f"kredete_opensearch_index_{f}", doc, ["index"]) for f, doc in (
        ("documents", "Documents in the index's primaries"), ("store_bytes", "Index size, replicas included"),
        ("primary_store_bytes", "Index size of the primaries"),
        ("status", "Index health: 0 green, 1 yellow, 2 red"))}
    queries = CounterMetricFamily("kredete_opensearch_index_search_queries", "Search query phases on the index",
                                  labels=["index"])
    slow = gauge("kredete_opensearch_search_slowlog_threshold_seconds",
                 "index.search.slowlog.threshold.<phase>.<level> as set on the index (-1: off)",
                 ["index", "phase", "level"])
    configured = gauge("kredete_opensearch_search_slowlog_configured",
                       "1 when the index sets any search slow-log threshold", ["index"])
    for i in stats.indices:
        idx["documents"].add_metric([i.index], i.documents)
        idx["store_bytes"].add_metric([i.index], i.bytes)
        idx["primary_store_bytes"].add_metric([i.index], i.primary_bytes)
        idx["status"].add_metric([i.index], STATUS.get(i.health, 2))
        queries.add_metric([i.index], i.query_total)
        configured.add_metric([i.index], 1 if i.slowlog_s else 0)
        for key, seconds in sorted(i.slowlog_s.items()):
            phase, _, level = key.partition(".")
            slow.add_metric([i.index, phase, level], seconds)
    return [*fams, *idx.values(), queries, slow, configured]


# --- storage ----------------------------------------------------------------------------------------------
async def refresh_storage(state: State) -> None:
    """Walk the data dirs and list the buckets (slow parts), then keep the results with their time."""
    now = time.time()
    dirs = await asyncio.to_thread(lambda: {n: data_dir_usage(p) for n, p in state.data_dirs.items()})
    with state.lock:
        state.storage["dirs"] = (now, dirs)
    try:
        from stores.monitoring.objects import ObjectStats
        from stores.objects.buckets import specs_for

        names = {b.name for b in specs_for(state.settings.s3_bucket_prefix)}
        buckets = await ObjectStats(await state.store("objects")).buckets(names)
        value: Any = [b.model_dump() for b in buckets]
    except Exception as exc:  # S3 down or refusing: no bucket numbers rather than old ones
        log.warning("bucket usage: %s", exc)
        await state.forget("objects")
        value = None
    with state.lock:
        state.storage["buckets"] = (time.time(), value)
    backups = await asyncio.to_thread(pgbackrest_info)
    with state.lock:
        state.storage["backups"] = (time.time(), backups)


def pgbackrest_info() -> list[dict[str, Any]] | None:
    """`pgbackrest info --output=json` when pgBackRest and a configuration exist (None: not set up)."""
    from config.paths import local_dir

    binary = shutil.which("pgbackrest")
    conf = os.environ.get("KREDETE_PGBACKREST_CONFIG") or str(local_dir() / "pgbackrest" / "pgbackrest.conf")
    if not binary or not Path(conf).exists():
        return None
    try:
        out = subprocess.run([binary, f"--config={conf}", "info", "--output=json"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        return json.loads(out)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        log.warning("pgbackrest info: %s", exc)
        return None


def storage_families(state: State) -> list[Any]:
    with state.lock:
        parts = dict(state.storage)
    fams: list[Any] = []
    data = gauge("kredete_store_data_bytes", "Bytes the store's data dir occupies on disk", ["store", "path"])
    size = gauge("kredete_store_fs_size_bytes", "Size of the filesystem holding the store's data dir",
                 ["store", "path"])
    avail = gauge("kredete_store_fs_avail_bytes", "Space available to the store on that filesystem", ["store", "path"])
    ratio = gauge("kredete_store_fs_used_ratio", "Used share of the filesystem holding the store's data dir "
                  "(as df counts it)", ["store", "path"])
    dirs = (parts.get("dirs") or (0, None))[1] or {}
    for store, path in sorted(state.data_dirs.items()):
        if not path.exists():
            continue
        total, free, used = fs_usage(path)  # live: cheap, and the alert must not read an old value
        size.add_metric([store, str(path)], total)
        avail.add_metric([store, str(path)], free)
        ratio.add_metric([store, str(path)], used)
        if store in dirs:
            data.add_metric([store, str(path)], dirs[store])
    mounts: dict[Path, list[str]] = {}
    for store, path in sorted(state.data_dirs.items()):
        if path.exists():
            mounts.setdefault(mount_point(path), []).append(store)
    fs_ratio = gauge("kredete_fs_used_ratio", "Used share of a filesystem holding store data (as df counts it)",
                     ["mount", "stores"])
    for mount, stores in sorted(mounts.items()):
        fs_ratio.add_metric([str(mount), ",".join(stores)], fs_usage(mount)[2])
    fams += [data, size, avail, ratio, fs_ratio]
    b_bytes = gauge("kredete_bucket_bytes", "Bytes stored in the bucket, every version counted", ["bucket"])
    b_objects = gauge("kredete_bucket_objects", "Object versions in the bucket", ["bucket"])
    b_old = gauge("kredete_bucket_noncurrent_versions", "Noncurrent versions and delete markers", ["bucket"])
    for b in (parts.get("buckets") or (0, None))[1] or []:
        b_bytes.add_metric([b["bucket"]], b["bytes"])
        b_objects.add_metric([b["bucket"]], b["objects"])
        b_old.add_metric([b["bucket"]], b["noncurrent"])
    fams += [b_bytes, b_objects, b_old, _parts_family(state, ("dirs", "buckets"))]
    return fams


def _parts_family(state: State, names: tuple[str, ...]) -> GaugeMetricFamily:
    up = gauge("kredete_collector_part_up", "1 when the part's last collection succeeded", ["part"])
    with state.lock:
        for name in names:
            entry = state.storage.get(name)
            up.add_metric([name], 1 if entry is not None and entry[1] is not None else 0)
    return up


# --- change feeds and backups -------------------------------------------------------------------------------
async def pipelines_families(state: State) -> list[Any]:
    from stores.errors import StoreError

    fams: list[Any] = []
    up = gauge("kredete_collector_part_up", "1 when the part's last collection succeeded", ["part"])
    events = gauge("kredete_outbox_consumer_lag_events", "Outbox events newer than the consumer's checkpoint",
                   ["database", "consumer"])
    seconds = gauge("kredete_outbox_consumer_lag_seconds", "Age of the oldest outbox event the consumer has not "
                    "passed (0 when caught up)", ["database", "consumer"])
    db_name = state.settings.mongo_db
    consumers: dict[str, float] | None = None
    try:
        from stores.monitoring.mongo import MongoStats

        consumers = {}
        for lag in await MongoStats(await state.store("mongo")).outbox_lag():
            events.add_metric([db_name, lag.consumer], lag.events)
            seconds.add_metric([db_name, lag.consumer], lag.seconds)
            consumers[lag.consumer] = lag.seconds
        up.add_metric(["outbox"], 1)
    except StoreError as exc:
        log.warning("outbox lag: %s", exc)
        await state.forget("mongo")
        up.add_metric(["outbox"], 0)
    fams += [events, seconds]
    sync, present, sync_ok = await search_sync_lag(state, consumers)
    fams += [sync, present]
    up.add_metric(["search_sync"], 1 if sync_ok else 0)
    backup = gauge("kredete_backup_last_success_timestamp_seconds", "Stop time of the newest successful backup "
                   "(pgBackRest), by stanza and type", ["stanza", "type"])
    with state.lock:
        info = (state.storage.get("backups") or (0, None))[1]
    stanzas = gauge("kredete_backup_stanza", "1 per pgBackRest stanza configured (with or without a backup)",
                    ["stanza"])
    for stanza in info or []:
        stanzas.add_metric([stanza.get("name", "?")], 1)
        newest: dict[str, int] = {}
        for b in stanza.get("backup", []):
            if b.get("error"):
                continue
            stop = int(b.get("timestamp", {}).get("stop") or 0)
            newest[b.get("type", "?")] = max(newest.get(b.get("type", "?"), 0), stop)
        for kind, stop in sorted(newest.items()):
            backup.add_metric([stanza.get("name", "?"), kind], stop)
    configured = gauge("kredete_backup_configured", "1 when a pgBackRest configuration was found and read")
    configured.add_metric([], 1 if info is not None else 0)
    return [*fams, backup, stanzas, configured, up]


async def search_sync_lag(state: State, consumers: dict[str, float] | None
                          ) -> tuple[GaugeMetricFamily, GaugeMetricFamily, bool]:
    """For each search index fed by a sync: how long its oldest change not yet applied has waited.

    Postgres-fed indexes: the oldest row of the feed table past the index's keyset checkpoint. Indexes kept
    by the credit-store follower (`kredete ingest --follow`, retrieval/changes.py): the age of the oldest
    outbox event its consumer has not passed (`consumers`: outbox consumer -> lag seconds; None when the
    outbox could not be read, so nothing is reported rather than a stale 0).
    """
    from retrieval.changes import FEED_NAME, TOPIC_INDEX
    from retrieval.feeds import FEEDS
    from stores.errors import StoreError
    from stores.monitoring.postgres import PostgresStats
    from stores.search.catalog import CHUNKS
    from stores.search.ingest_state import IngestState

    labels = ["index", "feed", "database"]
    lag = gauge("kredete_search_sync_lag_seconds", "Age of the oldest source change the index's sync has not "
                "applied yet (0 when caught up)", labels)
    present = gauge("kredete_search_sync_checkpoint_present", "1 when the index has a sync checkpoint (0: never "
                    "built or no follower registered, so no lag is reported)", labels)
    mongo_db = state.settings.mongo_db
    if consumers is not None:
        follower = consumers.get(FEED_NAME)
        for name in sorted({CHUNKS, *TOPIC_INDEX.values()}):
            present.add_metric([name, "outbox", mongo_db], 0 if follower is None else 1)
            if follower is not None:
                lag.add_metric([name, "outbox", mongo_db], follower)
    pg_db = state.settings.postgres_url.get_secret_value().rsplit("/", 1)[-1].split("?", 1)[0] \
        if state.settings.postgres_url else ""
    try:
        search = await state.store("search")
        pg = PostgresStats(await state.store("postgres"))
        checkpoints = IngestState(search)
        now = datetime.now(UTC)
        for name, feed in sorted(FEEDS.items()):
            if feed.kind != "postgres" or feed.table is None:
                continue  # Mongo-fed indexes follow the outbox: their lag is the consumer's
            doc = await checkpoints.checkpoint(f"index-{name}")
            present.add_metric([name, "postgres", pg_db], 1 if doc and doc.get("last_key") else 0)
            if not doc or not doc.get("last_key"):
                continue
            key = str(doc["last_key"])
            if feed.table.cursor == "id":
                first = await pg.first_after(feed.table.table, "id", int(key), "occurred_at")
            else:
                first = await pg.first_change_after(feed.table.table, *key.partition("|")[::2])
            lag.add_metric([name, "postgres", pg_db], max(0.0, (now - first).total_seconds()) if first else 0.0)
    except StoreError as exc:
        log.warning("search sync lag: %s", exc)
        await state.forget("search")
        await state.forget("postgres")
        return lag, present, False
    return lag, present, True


# --- HTTP ---------------------------------------------------------------------------------------------------
class _Families(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def exposition(families: list[Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


class Collecting:
    """Runs the collector's coroutines on its own event loop thread, for the HTTP handler threads."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="collector-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_refresh(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await refresh_storage(self.state)
                except Exception:  # keep refreshing; the failing part is reported as down
                    log.exception("storage refresh failed")
                await asyncio.sleep(self.state.monitor.monitor_storage_refresh_s)

        asyncio.run_coroutine_threadsafe(loop(), self.loop)


def make_handler(collecting: Collecting, parts: set[str]) -> type[BaseHTTPRequestHandler]:
    state = collecting.state
    routes: dict[str, Callable[[], list[Any]]] = {
        "/metrics/opensearch": lambda: collecting.run(opensearch_families(state)),
        "/metrics/storage": lambda: storage_families(state),
        "/metrics/pipelines": lambda: collecting.run(pipelines_families(state)),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                return self._send(200, b"ok\n", "text/plain")
            if path == "/metrics":
                return self._send(200, generate_latest(REGISTRY), "text/plain; version=0.0.4")
            part = path.rsplit("/", 1)[-1]
            if path not in routes or part not in parts:
                return self._send(404, b"not found\n", "text/plain")
            try:
                body = exposition(routes[path]())
            except PartDown as exc:
                return self._send(503, f"{exc}\n".encode(), "text/plain")
            except Exception as exc:  # never a stack trace to the scraper
                log.exception("collecting %s failed", path)
                return self._send(503, f"collecting {part} failed: {type(exc).__name__}\n".encode(), "text/plain")
            self._send(200, body, "text/plain; version=0.0.4")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per scrape is noise
            return

    return Handler


def stack_data_dirs() -> dict[str, Path]:
    """Data dirs of the servers the local stack runs (external stores have none here)."""
    from kredete.stack import plan
    from kredete.stack.exporters import MonitoringServer

    # The stores' data, and Prometheus' own (its TSDB grows); not the exporters' config dirs.
    return {s.name: s.data_dir for s in plan()[0] if not isinstance(s, MonitoringServer) or s.name == "prometheus"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--parts", default="opensearch,storage,pipelines",
                        help="comma-separated endpoints to serve (default: all)")
    args = parser.parse_args(argv)
    from config.logs import configure_json_logging

    configure_json_logging("kredete.collector")
    # The client logs every 404 (a sync checkpoint not made yet) as a warning: not news here.
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    monitor = load_monitoring_settings()  # a bad threshold stops the collector here, by name
    state = State(resolve(), monitor, stack_data_dirs())
    collecting = Collecting(state)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if "storage" in parts or "pipelines" in parts:
        collecting.start_refresh()
    # Warm up (imports, connections) before answering: the first scrape must not time out on them.
    for part, coro in (("opensearch", opensearch_families), ("pipelines", pipelines_families)):
        if part in parts:
            with contextlib.suppress(Exception):
                collecting.run(coro(state), timeout=120)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(collecting, parts))
    server.daemon_threads = True
    log.info("collector listening", extra={"port": args.port, "parts": sorted(parts)})
    server.serve_forever()


if __name__ == "__main__":
    main()
