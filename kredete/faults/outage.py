"""Single-store outages under a concurrent MCP load, caused for real, and what the agent saw.

* `credit_store_outage`: kill -9 the MCP server's FerretDB (a private one on the shared PostgreSQL backend),
  then kill -9 the MCP server itself while the store is down, start a new server (the store still down),
  start the store again, and measure.
* `redis_outage`: kill -9 the MCP server's Redis (a private standalone one), start it again, and measure.

Each returns an `OutageReport`: the share of calls served per tool during the outage, the refusals' texts
(all the designed `Unavailable` message, none leaking a driver, an address or a trace), how fast refusals
come once the breaker is open, the recovery time after the store is healthy again, acknowledged records and
how many of them are stored, and the audit rows against the answers the agent got.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from config.settings import Settings
from kredete.faults.load import LEAK, Call, McpLoad, served_share
from kredete.faults.processes import McpServer, PrivateFerretDB, PrivateRedis

#: High enough that the load is never rate limited (the limits themselves are tested elsewhere).
NO_LIMITS = {f"KREDETE_RATE_LIMIT_{k}": "100000" for k in ("PER_TOOL", "PER_PRINCIPAL", "DEGRADED_PER_TOOL",
                                                          "DEGRADED_PER_PRINCIPAL")}


@dataclass
class OutageReport:
    store: str
    outage_s: float
    calls: int
    #: Per tool: the share of its calls started during the outage that were answered with data.
    served_during_outage: dict[str, float]
    #: Distinct texts of the refusals the agent got during the outage.
    refusal_texts: list[str]
    #: Answers that leaked a driver name, an address or a trace (must be 0).
    leaks: int
    #: Refusals once the breaker is open: slowest and p99 answer time.
    refusal_max_s: float | None
    refusal_p99_s: float | None
    #: From the store healthy again to the first answer with data of a tool that needs it.
    recovery_s: float | None
    acknowledged: int
    stored: int
    #: Answers without an audit row of their outcome (per tool and outcome, counted; must be 0).
    unaudited: int
    audit_chain_ok: bool
    #: Refusals of calls that need the store by the first server during the outage (audit rows): those the
    #: breaker refused at once (reason `CircuitOpen`) and those that waited for the store's timeout first.
    #: With the breaker, the latter stay at most its failure count plus the calls in flight when it opened.
    refused_by_breaker: int = 0
    refused_by_timeout: int = 0
    #: Answer times of the calls served during the outage (p99), for comparison with the refusals'.
    served_p99_s: float | None = None
    breaker_during: dict[str, Any] = field(default_factory=dict)
    breaker_after: dict[str, Any] = field(default_factory=dict)
    server_killed: bool = False
    server_restart_s: float | None = None
    #: Per tool that needs the store: seconds from the store healthy again to its first answer with data.
    recovery_by_tool: dict[str, float | None] = field(default_factory=dict)
    #: Audit rows written from the durable local queue after the audit database came back (`deferred`).
    deferred_rows: int = 0
    #: What `kredete db verify-audit` said after the outage (empty: not run; the chain was verified in-process).
    verify_audit: str = ""
    #: Seconds each step of the scenario took (copying the dataset, starting servers, the outage, draining...).
    phase_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    from evals.harness import percentile

    return round(percentile(values, 99), 3)


async def pick_users(settings: Settings, n: int) -> list[UUID]:
    """Customers that have a credit report (so the credit-store tool answers with data when it is up)."""
    from stores.registry import connect

    stores = await connect(("mongo",), settings=settings)
    try:
        ids = await stores.mongo.db.credit_reports.distinct("user_id")
    finally:
        await stores.close()
    users = sorted({UUID(str(u)) for u in ids})[:n]
    if len(users) < n:
        raise RuntimeError(f"the dataset has {len(users)} users with a credit report; {n} needed")
    return users


async def _max_audit_id(settings: Settings) -> int:
    from stores.registry import connect

    stores = await connect(("postgres",), settings=settings)
    try:
        async with stores.postgres.connection() as conn:
            return int(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM audit_logs"))
    finally:
        await stores.close()


async def _audit(settings: Settings, after_id: int, subjects: list[str], *, verify: bool = True
                 ) -> tuple[list[dict[str, Any]], bool]:
    """Audit rows of the load's principals since `after_id`, and (`verify`) whether the whole chain verifies."""
    from stores.postgres.audit import AuditRepository
    from stores.registry import connect

    stores = await connect(("postgres",), settings=settings)
    try:
        async with stores.postgres.connection() as conn:
            rows = [dict(r) for r in await conn.fetch(
                "SELECT id, occurred_at, actor_subject, action, decision, reason, latency_ms, metadata FROM audit_logs "
                "WHERE id > $1 AND actor_subject = ANY($2::text[]) ORDER BY id", after_id, subjects)]
        if not verify:
            return rows, True
        report = await AuditRepository(stores.postgres).verify_chain()
        return rows, bool(report.ok)
    finally:
        await stores.close()


def unaudited(calls: list[Call], rows: list[dict[str, Any]]) -> int:
    """Answers that have no audit row of their outcome: per (subject, tool), answers with data need rows
    `allowed`, refusals rows `error`/`denied`/`rate_limited` (a write also has its intent row, so rows may
    outnumber answers; never the reverse). A write's intent row counts only when it is the refusal itself: the
    audit database down, the intent was kept in the durable queue as an `error` row and nothing was written."""
    need: dict[tuple[int, str, bool], int] = {}
    for c in calls:
        if not c.transport:
            key = (c.worker, c.tool, c.ok)
            need[key] = need.get(key, 0) + 1
    have: dict[tuple[int, str, bool], int] = {}
    for r in rows:
        worker = int(str(r["actor_subject"]).rsplit("-", 1)[1])
        meta = r["metadata"] if isinstance(r["metadata"], dict) else json.loads(r["metadata"] or "{}")
        if meta.get("phase") == "intent" and r["decision"] == "allowed":
            continue
        key = (worker, r["action"], r["decision"] == "allowed")
        have[key] = have.get(key, 0) + 1
    return sum(max(0, n - have.get(k, 0)) for k, n in need.items())


async def _stored_feedback(settings: Settings, ids: list[str], timeout_s: float) -> int:
    """How many of the acknowledged feedback ids are in the credit store (waiting up to `timeout_s` for the
    queue to drain)."""
    from stores.mongo import collections as names
    from stores.registry import connect

    if not ids:
        return 0
    stores = await connect(("mongo",), settings=settings)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            found = await stores.mongo.db[names.FEEDBACK_SIGNALS].count_documents({"_id": {"$in": ids}})
            if found == len(ids) or time.monotonic() > deadline:
                return int(found)
            await asyncio.sleep(0.5)
    finally:
        await stores.close()


async def _first_ok_after(load: McpLoad, tool: str, t0: float, timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ok = [c for c in load.calls if c.tool == tool and c.ok and c.started >= t0]
        if ok:
            return min(c.ended for c in ok) - t0
        await asyncio.sleep(0.05)
    return None


def _summary(store: str, load: McpLoad, t_kill: float, t_healthy: float, settle_s: float,
             needs_store: set[str], settled_until: float | None = None) -> dict[str, Any]:
    during = load.between(t_kill, t_healthy)
    served = {tool: round(served_share([c for c in during if c.tool == tool]), 4)
              for tool in sorted({c.tool for c in during})}
    refusals = [c for c in during if not c.ok]
    settled = [c.latency_s for c in refusals if c.tool in needs_store and c.started >= t_kill + settle_s
               and (settled_until is None or c.started < settled_until)]
    served_times = [c.latency_s for c in during if c.ok]
    return {"store": store, "outage_s": round(t_healthy - t_kill, 2), "calls": len(load.calls),
            "served_during_outage": served, "refusal_texts": sorted({c.text for c in refusals}),
            "leaks": sum(1 for c in load.calls if c.text and LEAK.search(c.text)),
            "refusal_max_s": round(max(settled), 3) if settled else None, "refusal_p99_s": _p99(settled),
            "served_p99_s": _p99(served_times)}


async def _breaker_state(server: McpServer, store: str, want: set[str], timeout_s: float) -> dict[str, Any]:
    """Poll the server's /healthz until `store`'s breaker is in one of `want` (or timeout); its last view."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = (await asyncio.to_thread(server.healthz)).get("breakers", {}).get(store, {})
        if seen.get("state") in want or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def credit_store_outage(settings: Settings, env: dict[str, str], workdir: Path, *, workers: int = 3,
                              per_tool: int = 3, warm_s: float = 1.0, kill_server: bool = True,
                              timeout_s: float = 60.0) -> OutageReport:
    """kill -9 the credit store under load; once its breaker is open and every tool was called `per_tool`
    times, (with `kill_server`) kill -9 the MCP server and start a new one while the store is still down, call
    again, then start the store and measure the recovery on the server that is up."""
    workdir = Path(workdir)
    ferret = PrivateFerretDB(workdir / "ferretdb")
    await asyncio.to_thread(ferret.start)
    env = {**env, **NO_LIMITS, "KREDETE_MONGO_URL": ferret.mongo_url(), "KREDETE_QUEUE_DIR": str(workdir / "queues")}
    users = await pick_users(settings, workers)
    before = await _max_audit_id(settings)
    server = McpServer(env, workdir / "server-1.log")
    servers = [server]
    await asyncio.to_thread(server.start)
    current: dict[str, str | None] = {"url": server.url}
    load = McpLoad(settings, users, lambda: current["url"], uuid.uuid4().hex[:8])
    load.start()
    restart_s = None
    try:
        await load.wait_calls(time.time() - warm_s, 1, timeout_s)
        t_kill = await asyncio.to_thread(ferret.kill9)
        during = await _breaker_state(server, "mongo", {"open", "half_open"}, timeout_s)
        t_open = time.time()
        await load.wait_calls(t_open, per_tool, timeout_s)
        t_server_kill = time.time()
        if kill_server:
            current["url"] = None
            await asyncio.to_thread(server.kill9)
            server = McpServer(env, workdir / "server-2.log")
            servers.append(server)
            restart_s = await asyncio.to_thread(server.start)  # the store is still down: it must start anyway
            current["url"] = server.url
            await load.wait_calls(time.time(), per_tool, timeout_s, server=server.url)
        await asyncio.to_thread(ferret.start)
        t_healthy = time.time()
        recovery = await _first_ok_after(load, "get_credit_report", t_healthy, timeout_s)
        await load.wait_calls(time.time(), 1, timeout_s)
        await load.stop()
        after = (await asyncio.to_thread(server.healthz)).get("breakers", {})
        acked = load.acknowledged_feedback()
        stored = await _stored_feedback(settings, acked, 30.0)
        rows, chain_ok = await _audit(settings, before, load.subjects)
        # Refusal times once the first server's breaker was open (the new server opens its own after N calls).
        summary = _summary("mongo", load, t_kill, t_healthy, t_open - t_kill, {"get_credit_report", "log_feedback"},
                           settled_until=t_server_kill)
        # The first server's refusals during the outage (it wrote every row before it was killed).
        refusals = [r for r in rows if r["action"] in ("get_credit_report", "log_feedback")
                    and r["decision"] == "error" and _meta(r).get("phase") != "intent"
                    and t_kill <= r["occurred_at"].timestamp() < t_server_kill]
        return OutageReport(**summary, recovery_s=round(recovery, 3) if recovery is not None else None,
                            acknowledged=len(acked), stored=stored, unaudited=unaudited(load.calls, rows),
                            refused_by_breaker=sum(1 for r in refusals if r["reason"] == "CircuitOpen"),
                            refused_by_timeout=sum(1 for r in refusals if r["reason"] != "CircuitOpen"),
                            audit_chain_ok=chain_ok, breaker_during=during, breaker_after=after.get("mongo", {}),
                            server_killed=kill_server,
                            server_restart_s=round(restart_s, 2) if restart_s is not None else None)
    finally:
        await load.stop()
        for s in servers:
            await asyncio.to_thread(s.stop)
        await asyncio.to_thread(ferret.stop)


async def redis_outage(settings: Settings, env: dict[str, str], workdir: Path, *, workers: int = 3,
                       per_tool: int = 3, outage_s: float = 2.0, warm_s: float = 1.0, settle_s: float = 1.0,
                       timeout_s: float = 60.0) -> OutageReport:
    """kill -9 the MCP server's Redis under load, start it again: tools keep answering, rate limiting
    degrades to the in-process limiter (said in each audit row) and comes back to Redis."""
    workdir = Path(workdir)
    redis = PrivateRedis(workdir / "redis")
    await asyncio.to_thread(redis.start)
    env = {**env, **NO_LIMITS, "KREDETE_REDIS_URL": redis.url(), "KREDETE_REDIS_AGENT_URL": redis.url(),
           "KREDETE_REDIS_TOPOLOGY": "standalone", "KREDETE_QUEUE_DIR": str(workdir / "queues")}
    users = await pick_users(settings, workers)
    before = await _max_audit_id(settings)
    server = McpServer(env, workdir / "server.log")
    await asyncio.to_thread(server.start)
    load = McpLoad(settings, users, lambda: server.url, uuid.uuid4().hex[:8])
    load.start()
    try:
        await load.wait_calls(time.time() - warm_s, 1, timeout_s)
        t_kill = await asyncio.to_thread(redis.kill9)
        await asyncio.sleep(outage_s)
        await load.wait_calls(t_kill, per_tool, timeout_s)
        during = (await asyncio.to_thread(server.healthz)).get("breakers", {})
        await asyncio.to_thread(redis.start)
        t_healthy = time.time()
        recovered_at = await _rate_limit_back(settings, load, before, t_healthy, 30.0)
        await asyncio.sleep(1.0)
        await load.stop()
        after = (await asyncio.to_thread(server.healthz)).get("breakers", {})
        acked = load.acknowledged_feedback()
        stored = await _stored_feedback(settings, acked, 30.0)
        rows, chain_ok = await _audit(settings, before, load.subjects)
        summary = _summary("redis", load, t_kill, t_healthy, settle_s, set())
        degraded = sum(1 for r in rows if _meta(r).get("rate_limit") == "degraded"
                       and t_kill <= r["occurred_at"].timestamp() < t_healthy)
        report = OutageReport(**summary, recovery_s=round(recovered_at - t_healthy, 3) if recovered_at else None,
                              acknowledged=len(acked), stored=stored, unaudited=unaudited(load.calls, rows),
                              audit_chain_ok=chain_ok, breaker_during=during.get("redis", {}),
                              breaker_after=after.get("redis", {}))
        report.breaker_during["degraded_rows"] = degraded
        return report
    finally:
        await load.stop()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(redis.stop)


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    m = row["metadata"]
    return m if isinstance(m, dict) else json.loads(m or "{}")


async def _rate_limit_back(settings: Settings, load: McpLoad, before: int, t0: float,
                           timeout_s: float) -> float | None:
    """When calls are counted in Redis again: the first audit row after `t0` not marked degraded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows, _ = await _audit(settings, before, load.subjects, verify=False)
        back = [r["occurred_at"].timestamp() for r in rows
                if r["occurred_at"].timestamp() >= t0 and _meta(r).get("rate_limit") != "degraded"]
        if back:
            return min(back)
        await asyncio.sleep(0.5)
    return None
