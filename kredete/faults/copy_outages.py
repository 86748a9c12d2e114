"""Outages of PostgreSQL and OpenSearch under a concurrent MCP load, on private copies of the dataset
(`kredete.faults.copies`), caused for real (kill -9) and measured like `kredete.faults.outage`'s.

* `postgres_outage`: the MCP server runs on a private PostgreSQL (its data, its audit trail, and the backend
  of a private FerretDB: the credit store, as in the stack). Every call needs it: each is audited before data
  is returned, so during the outage no tool answers with data, and each refusal's audit row waits in the
  durable local queue until the database is back. Measured: what the agent saw, the rows written from the
  queue, the recovery per tool, acknowledged feedback stored, `kredete db verify-audit` afterwards.
* `opensearch_outage`: the MCP server searches a private OpenSearch node; only `search_knowledge` needs it.
  Measured: the other tools' share served during the outage, the search's refusals, its recovery.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.paths import REPO_ROOT
from config.settings import Settings, resolve
from kredete.faults.copies import PrivateOpenSearch, PrivatePostgres
from kredete.faults.load import NEEDS, SEARCH, McpLoad, warm_search
from kredete.faults.outage import (
    NO_LIMITS,
    OutageReport,
    _audit,
    _breaker_state,
    _first_ok_after,
    _max_audit_id,
    _meta,
    _stored_feedback,
    _summary,
    pick_users,
    unaudited,
)
from kredete.faults.processes import KREDETE, McpServer, PrivateFerretDB


class Steps:
    """Seconds each named step took, in order (`mark(name)` ends the step that started at the last mark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._t, 2)
        self._t = now


def scratch_dir(kind: str) -> Path:
    """A scratch dir under the repo's `.local/` (not /tmp: the servers' unprivileged user must reach it)."""
    path = REPO_ROOT / ".local" / "scratch" / f"faults-{kind}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def verify_audit(env: dict[str, str], url: str | None = None) -> tuple[bool, str]:
    """`kredete db verify-audit` as an operator runs it: (passed, its last line)."""
    argv = [KREDETE, "db", "verify-audit", *(["--url", url] if url else [])]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return proc.returncode == 0, (out[-1] if out else "")[:300]


async def _queue_drained(queue: Path, timeout_s: float) -> int:
    """Wait until the durable audit queue `queue` holds nothing; the records still in it (0: drained)."""
    from stores.local_queue import DurableQueue

    if not await asyncio.to_thread(queue.exists):
        return 0
    q = DurableQueue(queue, name="audit-check")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            left = await q.depth()
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.25)
    finally:
        await q.close()


async def _recoveries(load: McpLoad, tools: list[str], t0: float, timeout_s: float) -> dict[str, float | None]:
    found = await asyncio.gather(*(_first_ok_after(load, t, t0, timeout_s) for t in tools))
    return {t: (round(v, 3) if v is not None else None) for t, v in zip(tools, found, strict=True)}


@dataclass
class Outage:
    """Times (epoch seconds) and breaker views of one outage caused under load."""

    t_kill: float
    t_open: float
    t_healthy: float
    during: dict
    during_all: dict
    recovery: dict[str, float | None]


async def _cause_outage(load: McpLoad, server: McpServer, steps: Steps, *, kill: Callable[[], float],
                        restart: Callable[[], None], breaker: str, recover: list[str], warm_s: float,
                        per_tool: int, outage_s: float, timeout_s: float) -> Outage:
    """The sequence both outages share: warm load, kill -9, wait for the breaker to open and for calls
    during the outage, keep it down `outage_s`, restart, and measure each tool's recovery."""
    await load.wait_calls(time.time() - warm_s, 1, timeout_s)
    steps.mark("warm_load")
    t_kill = await asyncio.to_thread(kill)
    during = await _breaker_state(server, breaker, {"open", "half_open"}, timeout_s)
    t_open = time.time()
    await load.wait_calls(t_open, per_tool, timeout_s)
    await asyncio.sleep(max(0.0, t_kill + outage_s - time.time()))
    during_all = (await asyncio.to_thread(server.healthz)).get("breakers", {})
    steps.mark("outage")
    await asyncio.to_thread(restart)
    steps.mark("restart")
    t_healthy = time.time()
    recovery = await _recoveries(load, recover, t_healthy, timeout_s)
    await load.wait_calls(time.time(), 1, timeout_s)
    await load.stop()
    steps.mark("recovery")
    return Outage(t_kill, t_open, t_healthy, during, during_all, recovery)


async def postgres_outage(settings: Settings, env: dict[str, str], workdir: Path, *, workers: int = 3,
                          per_tool: int = 3, outage_s: float = 2.0, warm_s: float = 1.0, pause_s: float = 0.05,
                          timeout_s: float = 90.0) -> OutageReport:
    """kill -9 the MCP server's PostgreSQL (a private copy of the dataset, also its credit store's backend) under
    load, start it again (crash recovery), and measure (see the module's docstring)."""
    workdir = Path(workdir)
    db, mongo_db = settings.postgres_db, settings.mongo_db
    steps = Steps()
    pg = PrivatePostgres(scratch_dir("postgres"))
    ferret: PrivateFerretDB | None = None
    server: McpServer | None = None
    load: McpLoad | None = None
    try:
        await asyncio.to_thread(pg.provision)
        await asyncio.to_thread(pg.start)
        steps.mark("postgres_start")
        await asyncio.to_thread(pg.copy_dataset, settings.postgres_url.get_secret_value(), db, mongo_db)
        steps.mark("copy")
        ferret = PrivateFerretDB(workdir / "ferretdb", backend_url=pg.ferretdb_backend_url())
        await asyncio.to_thread(ferret.start)
        urls = {"postgres_url": pg.superuser_url(db),
                "postgres_agent_url": pg.role_url("kredete_agent_ro", "postgres_agent_ro", db),
                "postgres_log_url": pg.role_url("kredete_agent_log", "postgres_agent_log", db),
                "mongo_url": ferret.mongo_url()}
        private = resolve(Settings(**urls, postgres_db=db, mongo_db=mongo_db, index_prefix=settings.index_prefix,
                                   s3_bucket_prefix=settings.s3_bucket_prefix))
        queue = workdir / "queues"
        # No search sync: its checkpoints live in the shared OpenSearch, which must not follow this copy's rows.
        env = {**env, **NO_LIMITS, **{f"KREDETE_{k.upper()}": v for k, v in urls.items()},
               "KREDETE_QUEUE_DIR": str(queue), "KREDETE_SEARCH_SYNC_INTERVAL_S": "0"}
        users = await pick_users(private, workers)
        before = await _max_audit_id(private)
        server = McpServer(env, workdir / "server.log")
        await asyncio.to_thread(server.start)
        steps.mark("ferretdb_and_mcp_server_start")
        load = McpLoad(private, users, lambda: server.url, uuid.uuid4().hex[:8], pause_s=pause_s)
        load.start()
        # restart: crash recovery, then healthy (pg_isready)
        o = await _cause_outage(load, server, steps, kill=pg.kill9, restart=pg.start, breaker="postgres_audit",
                                recover=list(NEEDS), warm_s=warm_s, per_tool=per_tool, outage_s=outage_s,
                                timeout_s=timeout_s)
        left = await _queue_drained(queue / "audit.sqlite", 60.0)
        after = (await asyncio.to_thread(server.healthz)).get("breakers", {})
        acked = load.acknowledged_feedback()
        stored = await _stored_feedback(private, acked, 30.0)
        rows, chain_ok = await _audit(private, before, load.subjects)
        verified, said = await asyncio.to_thread(verify_audit, env, pg.superuser_url(db))
        steps.mark("drain_and_check")
        summary = _summary("postgres", load, o.t_kill, o.t_healthy, o.t_open - o.t_kill, set(NEEDS))
        report = OutageReport(**summary, recovery_s=_slowest(o.recovery), recovery_by_tool=o.recovery,
                              acknowledged=len(acked), stored=stored, unaudited=unaudited(load.calls, rows),
                              audit_chain_ok=chain_ok and verified and left == 0,
                              deferred_rows=sum(1 for r in rows if _meta(r).get("deferred")),
                              breaker_during={**o.during,
                                              "all": {k: v.get("state") for k, v in o.during_all.items()},
                                              "queued_audit_rows_left": left},
                              breaker_after={k: v.get("state") for k, v in after.items()},
                              verify_audit=said, phase_s=steps.seconds)
        return report
    finally:
        if load is not None:
            await load.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)
        if ferret is not None:
            await asyncio.to_thread(ferret.stop)
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(pg.data_dir, ignore_errors=True)


def _slowest(recovery: dict[str, float | None]) -> float | None:
    """The recovery of the whole server: the last of its tools to answer again (None if one never did)."""
    values = list(recovery.values())
    return None if not values or any(v is None for v in values) else max(values)


async def opensearch_outage(settings: Settings, env: dict[str, str], workdir: Path, *, workers: int = 3,
                            per_tool: int = 3, outage_s: float = 2.0, warm_s: float = 1.0, heap: str = "256m",
                            pause_s: float = 0.05, search_mode: str | None = None,
                            timeout_s: float = 90.0) -> OutageReport:
    """kill -9 the MCP server's OpenSearch (a private node with a copy of the dataset's indices) under load,
    start it again, and measure (see the module's docstring). `search_mode`: the load's retrieval mode (None:
    the server's default, hybrid)."""
    workdir = Path(workdir)
    steps = Steps()
    node = PrivateOpenSearch(scratch_dir("opensearch"), heap=heap)
    server: McpServer | None = None
    load: McpLoad | None = None
    try:
        await asyncio.to_thread(node.provision)
        # The MCP server starts meanwhile (its search client connects lazily). Without the search sync: it would
        # create the audit-log index on the node while the copy is made.
        env = {**env, **NO_LIMITS, "KREDETE_OPENSEARCH_URL": node.url(), "KREDETE_QUEUE_DIR": str(workdir / "queues"),
               "KREDETE_SEARCH_SYNC_INTERVAL_S": "0"}
        server = McpServer(env, workdir / "server.log")
        source = settings.opensearch_url.get_secret_value().split(",")[0]

        users = await pick_users(settings, workers)

        async def node_with_copy() -> dict[str, int]:
            await asyncio.to_thread(node.start)
            steps.mark("opensearch_start")
            return await asyncio.to_thread(node.copy_indices, source, settings.index_prefix)

        async def server_warm() -> None:
            await asyncio.to_thread(server.start)
            # The server loads its query encoder on the first search (whatever the mode; answered or refused: the
            # node may not be up yet), blocking every call for seconds: done while the node starts.
            await warm_search(settings, server.url, users[0], f"faults-warm-{uuid.uuid4().hex[:8]}")

        copied, _ = await asyncio.gather(node_with_copy(), server_warm())
        steps.mark("copy_and_mcp_server_start")
        before = await _max_audit_id(settings)
        load = McpLoad(settings, users, lambda: server.url, uuid.uuid4().hex[:8], tools=(*NEEDS, SEARCH),
                       pause_s=pause_s, search_mode=search_mode)
        load.start()
        # restart: healthy once the cluster is yellow or green (every primary assigned)
        o = await _cause_outage(load, server, steps, kill=node.kill9, restart=node.start, breaker="opensearch",
                                recover=[SEARCH], warm_s=warm_s, per_tool=per_tool, outage_s=outage_s,
                                timeout_s=timeout_s)
        after = (await asyncio.to_thread(server.healthz)).get("breakers", {})
        acked = load.acknowledged_feedback()
        stored = await _stored_feedback(settings, acked, 30.0)
        rows, _ = await _audit(settings, before, load.subjects, verify=False)  # the chain: verify-audit below
        verified, said = await asyncio.to_thread(verify_audit, env)
        steps.mark("checks")
        summary = _summary("opensearch", load, o.t_kill, o.t_healthy, o.t_open - o.t_kill, {SEARCH})
        report = OutageReport(**summary, recovery_s=o.recovery[SEARCH], recovery_by_tool=o.recovery,
                              acknowledged=len(acked), stored=stored, unaudited=unaudited(load.calls, rows),
                              audit_chain_ok=verified, breaker_during={**o.during, "indices_copied": copied},
                              breaker_after=after.get("opensearch", {}), verify_audit=said,
                              phase_s=steps.seconds)
        return report
    finally:
        if load is not None:
            await load.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)
        if node.pid():  # thrown away with its data: no graceful shutdown to wait for
            await asyncio.to_thread(node.kill9)
        shutil.rmtree(node.data_dir, ignore_errors=True)
