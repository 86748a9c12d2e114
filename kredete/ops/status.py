"""What `kredete ops status` shows: health per store, replica lag, pools, disk, slow statements, alerts.

Everything but the slow statements comes from the local Prometheus (so it is what the alerts see); the
statements come from pg_stat_statements on the primary. A part that cannot be read says so: nothing is
shown as healthy because it could not be checked.
"""

from __future__ import annotations

import asyncio
import urllib.parse

from pydantic import BaseModel, Field

from config.errors import StackError


class StoreHealth(BaseModel):
    store: str
    instance: str
    ok: bool
    detail: str = ""


class ReplicaLag(BaseModel):
    replica: str
    streaming: bool
    lag_bytes: float | None = None
    replay_delay_s: float | None = None


class PoolUse(BaseModel):
    instance: str
    pool: str
    in_use: int
    max: int
    waiting: int


class DiskUse(BaseModel):
    store: str
    data_bytes: float | None
    fs_used_ratio: float


class Alert(BaseModel):
    name: str
    severity: str
    state: str
    summary: str
    since: str = ""


class Statement(BaseModel):
    datname: str
    calls: int
    mean_ms: float
    total_s: float
    statement: str


class OpsStatus(BaseModel):
    prometheus: bool
    problems: list[str] = Field(default_factory=list)
    stores: list[StoreHealth] = Field(default_factory=list)
    replicas: list[ReplicaLag] = Field(default_factory=list)
    pools: list[PoolUse] = Field(default_factory=list)
    disk: list[DiskUse] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    statements: list[Statement] | None = None
    statements_note: str = ""

    @property
    def critical(self) -> list[str]:
        """Why this status is critical (empty when it is not)."""
        why = list(self.problems)
        why += [f"{s.store} ({s.instance}) is down{': ' + s.detail if s.detail else ''}"
                for s in self.stores if not s.ok]
        why += [f"alert {a.name}: {a.summary}" for a in self.alerts if a.severity == "critical" and a.state == "firing"]
        return why


def _query(expr: str) -> list[tuple[dict[str, str], float]]:
    from kredete.stack.prometheus import api

    data = api("/api/v1/query?query=" + urllib.parse.quote(expr))
    return [(r["metric"], float(r["value"][1])) for r in data["result"]]


def gather(top: int = 5) -> OpsStatus:
    from kredete.stack.prometheus import prune_stale_announcements, scrape_targets

    prune_stale_announcements()
    try:
        targets = scrape_targets()
    except StackError as exc:
        status = OpsStatus(prometheus=False, problems=[f"monitoring is blind: {exc}"])
        _statements(status, top)
        return status
    status = OpsStatus(prometheus=True)
    status.stores = [StoreHealth(store=t["server"] or t["job"], instance=t["instance"], ok=t["health"] == "up",
                                 detail=t["error"][:120] if t["health"] != "up" else "")
                     for t in targets if t["job"] not in ("storage", "pipelines", "collector")]
    for labels, value in _query("kredete_opensearch_cluster_status"):
        colour = {0: "green", 1: "yellow", 2: "red"}.get(int(value), "?")
        for s in status.stores:
            if s.store == "opensearch":
                s.detail = f"cluster {labels.get('cluster', '')} {colour}"
                s.ok = s.ok and colour != "red"
    streaming = {m.get("server"): v for m, v in _query('kredete_pg_standby_wal_receiver_streaming{role="replica"}')}
    delay = {m.get("server"): v for m, v in _query("kredete_pg_standby_replay_delay_seconds{role=\"replica\"}")}
    # The primary reports bytes per connected standby under its application_name, which is the replica's
    # cluster_name, i.e. its server name.
    lag_bytes = {m.get("application_name"): v for m, v in _query("kredete_pg_replication_replay_lag_bytes")}
    for t in targets:
        if t["job"] == "postgres" and t["server"] != "postgres" and t["server"]:
            name = t["server"]
            status.replicas.append(ReplicaLag(replica=name, streaming=streaming.get(name, 0) == 1,
                                              replay_delay_s=delay.get(name), lag_bytes=lag_bytes.get(name)))
    inuse = {(m["instance"], m["pool"]): v for m, v in _query("kredete_pool_in_use_connections")}
    maxes = {(m["instance"], m["pool"]): v for m, v in _query("kredete_pool_max_connections")}
    waiting = {(m["instance"], m["pool"]): v for m, v in _query("kredete_pool_waiting_requests")}
    status.pools = [PoolUse(instance=i, pool=p, in_use=int(v), max=int(maxes.get((i, p), 0)),
                            waiting=int(waiting.get((i, p), 0))) for (i, p), v in sorted(inuse.items())]
    data = {m["store"]: v for m, v in _query("kredete_store_data_bytes")}
    status.disk = [DiskUse(store=m["store"], data_bytes=data.get(m["store"]), fs_used_ratio=v)
                   for m, v in sorted(_query("kredete_store_fs_used_ratio"), key=lambda x: x[0]["store"])]
    from kredete.stack.prometheus import api

    for a in api("/api/v1/alerts")["alerts"]:
        labels, ann = a.get("labels", {}), a.get("annotations", {})
        status.alerts.append(Alert(name=labels.get("alertname", "?"), severity=labels.get("severity", "none"),
                                   state=a.get("state", "?"), summary=ann.get("summary", ""),
                                   since=(a.get("activeAt") or "")[:19]))
    status.alerts.sort(key=lambda a: (a.state != "firing", a.severity != "critical", a.name))
    _statements(status, top)
    return status


def _statements(status: OpsStatus, top: int) -> None:
    try:
        rows = asyncio.run(top_statements(top))
    except Exception as exc:  # the database or the extension is missing: say so, do not fail the screen
        status.statements_note = f"pg_stat_statements unavailable: {str(exc).splitlines()[0][:160]}"
        return
    status.statements = rows


async def top_statements(limit: int, order: str = "total", database: str | None = None) -> list[Statement]:
    from stores.monitoring.postgres import PostgresStats
    from stores.registry import connect

    stores = await connect(("postgres",))
    try:
        stats = PostgresStats(stores.postgres)
        if not await stats.has_statements():
            raise StackError("the pg_stat_statements extension is not installed in this database")
        rows = await stats.top_statements(limit, order=order, database=database)
    finally:
        await stores.close()
    return [Statement(datname=r.datname, calls=r.calls, mean_ms=r.mean_s * 1000, total_s=r.total_s,
                      statement=r.statement) for r in rows]

