"""The local stack: every server of the data tier, provisioned and run for real on this machine."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config import ports
from config.errors import ConfigError
from config.settings import Settings, check_coherent, get_settings
from kredete.stack.base import Server, ServerStatus, StackError, side_by_side
from kredete.stack.ferretdb import FerretDBServer
from kredete.stack.minio import AccessLogReceiver, MinioColdServer, MinioReplicaServer, MinioServer
from kredete.stack.postgres import PostgresPrimary, PostgresReplica
from kredete.stack.redis import redis_server

__all__ = ["Server", "ServerStatus", "Skipped", "StackError", "all_servers", "down", "plan", "print_status",
           "reset", "skipped", "status", "up"]

#: Servers that need another server of the stack running first (`up --only X` starts those too).
DEPENDS = {"postgres-replica": ("postgres",), "postgres-replica2": ("postgres",), "mongo": ("postgres",),
           # S3 is the primary with its log receiver, remote tier and DR region (replication target)
           "s3": ("s3-audit", "s3-cold"), "s3-dr": ("s3-audit",),
           "prometheus": ("alertmanager",)}
#: The HA profile: Patroni members need the etcd quorum; FerretDB needs a leader.
HA_DEPENDS = {**{f"ha-pg{i}": ("etcd1", "etcd2", "etcd3") for i in (1, 2, 3)},
              "mongo": ("etcd1", "etcd2", "etcd3", "ha-pg1", "ha-pg2", "ha-pg3")}
PROFILES = ("default", "ha", "lean")
#: `--only opensearch` in the ha profile names the three nodes of the search cluster.
HA_ALIASES = {"opensearch": tuple(f"opensearch-{i}" for i in (1, 2, 3))}


def profile() -> str:
    """`default` (primary + two streaming replicas, pgBackRest), `ha` (Patroni over etcd) or `lean` (the primary
    alone, no WAL archiving: size runs): KREDETE_STACK_PROFILE, or `kredete stack up --profile`."""
    return get_settings().stack_profile


def use_profile(name: str) -> None:
    """Switch this process (and the commands it starts) to a profile."""
    import os

    from config.settings import reset_settings

    if name not in PROFILES:
        raise StackError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    os.environ["KREDETE_STACK_PROFILE"] = name
    reset_settings()


@dataclass(frozen=True)
class Skipped:
    """A server of the stack that is not run locally, and why."""

    name: str
    reason: str
    #: True when the store cannot work as configured (a setting is missing), not merely external.
    refused: bool = False


def all_servers(name: str | None = None) -> list[Server]:
    """Servers in start order (the replica needs its primary) of a profile (default: the current one); the
    monitoring servers of that plan last."""
    from kredete.stack.monitoring import monitoring_servers
    from kredete.stack.opensearch import OpenSearchServer
    from kredete.stack.opensearch_cluster import OpenSearchNode, ha_cluster

    if (name or profile()) == "ha":
        from kredete.stack.etcd import MEMBERS, EtcdMember
        from kredete.stack.patroni import PatroniMember

        cluster = ha_cluster()
        data = [*(EtcdMember(i) for i in range(MEMBERS)), *(PatroniMember(i) for i in range(MEMBERS)),
                redis_server(get_settings().redis_topology), FerretDBServer(),
                *(OpenSearchNode(cluster, i) for i in range(len(cluster.nodes))), AccessLogReceiver(),
                MinioColdServer(), MinioServer(), MinioReplicaServer()]
        return [*data, *monitoring_servers(data)]
    if (name or profile()) == "lean":  # the primary alone: no replicas, no WAL archive (reads go to the primary)
        pg: list[Server] = [PostgresPrimary(archive=False)]
    else:
        primary = PostgresPrimary(archive=True)
        pg = [primary, PostgresReplica(primary), PostgresReplica(primary, "postgres-replica2", ports.POSTGRES_REPLICA2)]
    data = [*pg, redis_server(get_settings().redis_topology), FerretDBServer(), OpenSearchServer(), AccessLogReceiver(),
            MinioColdServer(), MinioServer(), MinioReplicaServer()]
    return [*data, *monitoring_servers(data)]


def _why_not_local(name: str, settings: Settings) -> Skipped | None:
    """None when the local stack runs this server under these settings."""
    pg = settings.postgres_url is not None
    if (name.startswith(("etcd", "ha-pg"))) and pg:
        return Skipped(name, "none: the primary is external (KREDETE_POSTGRES_URL), its HA is the managed service's")
    if name == "postgres" and pg:
        return Skipped(name, f"external: KREDETE_POSTGRES_URL = {_shown(settings.postgres_url)}")
    if name in ("postgres-replica", "postgres-replica2") and pg:
        if settings.postgres_replica_url is None:
            return Skipped(name, "none: KREDETE_POSTGRES_REPLICA_URL is unset, so reads go to the external "
                                 "primary (KREDETE_POSTGRES_URL)")
        return Skipped(name, f"external: KREDETE_POSTGRES_REPLICA_URL = {_shown(settings.postgres_replica_url)}")
    if name == "mongo":
        if settings.mongo_url is not None:
            return Skipped(name, f"external: KREDETE_MONGO_URL = {_shown(settings.mongo_url)}")
        if pg:
            return Skipped(name, "not started: the local MongoDB-wire server (FerretDB) keeps its data in the "
                                 "local PostgreSQL, which is not run when KREDETE_POSTGRES_URL is set. Set "
                                 "KREDETE_MONGO_URL to your MongoDB (or unset KREDETE_POSTGRES_URL)", refused=True)
    if name == "redis" and settings.redis_url is not None:
        return Skipped(name, f"external: KREDETE_REDIS_URL = {_shown(settings.redis_url)}")
    if name.startswith("opensearch") and settings.opensearch_url is not None:
        return Skipped(name, f"external: KREDETE_OPENSEARCH_URL = {_shown(settings.opensearch_url)}")
    if name == "s3" and settings.s3_url is not None:
        return Skipped(name, f"external: KREDETE_S3_URL = {_shown(settings.s3_url)}")
    if name in ("s3-cold", "s3-audit") and settings.s3_url is not None:
        what = "remote tier" if name == "s3-cold" else "access-log receiver"
        return Skipped(name, f"none: KREDETE_S3_URL is external (its {what} is the managed service's)")
    if name == "s3-dr":
        if settings.s3_dr_url is not None:
            return Skipped(name, f"external: KREDETE_S3_DR_URL = {_shown(settings.s3_dr_url)}")
        if settings.s3_url is not None:
            return Skipped(name, "none: KREDETE_S3_URL is external and KREDETE_S3_DR_URL is unset (no DR region)")
    return None


def _shown(url: object) -> str:
    from stores.errors import redact_url

    text = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    return redact_url(text)


def plan(only: Iterable[str] | None = None, settings: Settings | None = None,
         profile_name: str | None = None) -> tuple[list[Server], list[Skipped]]:
    """The servers the local stack runs under these settings and profile (default: the current one), in
    start order, and the ones it does not."""
    settings = settings or get_settings()
    try:
        check_coherent(settings)
    except ConfigError as exc:
        raise StackError(str(exc)) from exc
    name = profile_name or profile()
    servers = _select(all_servers(name), _aliases(only, name))
    run: list[Server] = []
    not_run: list[Skipped] = []
    for server in servers:
        why = _why_not_local(server.name, settings)
        watched = getattr(server, "watches", None)  # an exporter runs only next to its local store
        if why is None and watched is not None and (inner := _why_not_local(watched, settings)) is not None:
            why = Skipped(server.name, f"not run: {watched} is not local ({inner.reason}); its managed "
                                       "service's own monitoring applies")
        if why is None:
            run.append(server)
        else:
            not_run.append(why)
    return run, not_run


def _aliases(only: Iterable[str] | None, profile_name: str) -> list[str] | None:
    if only is None:
        return None
    aliases = HA_ALIASES if profile_name == "ha" else {}
    return [n for name in only for n in aliases.get(name, (name,))]


def _select(servers: list[Server], only: Iterable[str] | None) -> list[Server]:
    wanted = set(only or [])
    if not wanted:
        return servers
    unknown = wanted - {s.name for s in servers}
    if unknown:
        raise StackError(f"unknown server(s) {sorted(unknown)}; known: {[s.name for s in servers]}")
    return [s for s in servers if s.name in wanted]


def local_servers(only: Iterable[str] | None = None) -> list[Server]:
    """Servers the local stack runs: those whose store has no external URL configured."""
    return plan(only)[0]


def skipped(only: Iterable[str] | None = None) -> list[Skipped]:
    """Servers of the stack not run locally under the current settings, with the reason."""
    return plan(only)[1]


def _with_dependencies(only: Iterable[str], profile_name: str | None = None) -> list[str]:
    names: list[str] = []
    depends = HA_DEPENDS if (profile_name or profile()) == "ha" else DEPENDS
    for name in only:
        for dep in (*depends.get(name, ()), name):
            if dep not in names:
                names.append(dep)
    return names


def up(only: Iterable[str] | None = None, console: Console | None = None,
       profile_name: str | None = None) -> list[ServerStatus]:
    """Provision and start (idempotently); return the status of each server started.

    `only` names servers to start together with the ones they need (the replica and FerretDB need the
    primary). A server that cannot run as configured is refused when named in `only`, and skipped with its
    reason otherwise. `profile_name` picks another profile's servers than the current one (a bench runs the
    single search node and the ha cluster side by side).
    """
    console = console or Console(stderr=True)
    wanted = _with_dependencies(only, profile_name) if only else None
    servers, not_run = plan(wanted, profile_name=profile_name)
    refused = [s for s in not_run if s.refused]
    if only and refused:
        raise StackError("; ".join(f"{s.name}: {s.reason}" for s in refused))
    for s in not_run:
        console.log(f"{s.name}: {s.reason}")
    from config.secrets import local_secrets
    from kredete.stack.monitoring import is_monitoring

    if servers:
        local_secrets()  # made here once: the lanes below read it from parallel threads
    name = profile_name or profile()
    data = [s for s in servers if not is_monitoring(s)]
    # The monitoring servers last, one lane: the exporters and Prometheus watch the data servers.
    done = _start_lanes(_lanes(data, HA_DEPENDS if name == "ha" else DEPENDS), console)
    done += _start_lanes([[s for s in servers if is_monitoring(s)]], console)
    (_ha_backups_ready if name == "ha" else _backups_ready)({s.name for s in servers}, console)
    return done


def _lanes(servers: list[Server], depends: dict[str, tuple[str, ...]]) -> list[list[Server]]:
    """The servers split into lanes that may start side by side: servers linked by `depends` share a lane
    (in start order), the others (OpenSearch, Redis, the S3 servers) get their own."""
    lane_of: dict[str, int] = {}
    lanes: list[list[Server]] = []
    for server in servers:
        linked = {lane_of[d] for d in depends.get(server.name, ()) if d in lane_of}
        linked |= {lane_of[n] for n, deps in depends.items() if server.name in deps and n in lane_of}
        if not linked:
            lane_of[server.name] = len(lanes)
            lanes.append([server])
            continue
        first, *others = sorted(linked)
        for other in others:  # a server that joins two lanes merges them, keeping start order
            lanes[first] = sorted([*lanes[first], *lanes[other]], key=servers.index)
            for moved in lanes[other]:
                lane_of[moved.name] = first
            lanes[other] = []
        lanes[first].append(server)
        lane_of[server.name] = first
    return [lane for lane in lanes if lane]


def _start_lanes(lanes: list[list[Server]], console: Console) -> list[ServerStatus]:
    """Provision and start each lane's servers in order, the lanes in parallel threads; the first failure is
    raised once every lane has finished (a lane half-way through is not abandoned mid-start)."""
    lanes = [lane for lane in lanes if lane]
    if not lanes:
        return []
    names = ", ".join(s.name for lane in lanes for s in lane)
    with console.status(f"[bold]starting[/] {names}"):
        started = side_by_side([functools.partial(_start_lane, lane, console) for lane in lanes])
    return [row for rows in started for row in rows]


def _start_lane(lane: list[Server], console: Console) -> list[ServerStatus]:
    done: list[ServerStatus] = []
    for batch in _batches(lane):
        t0 = time.monotonic()
        names = ", ".join(s.name for s in batch)
        for server in batch:
            server.provision()
        t1 = time.monotonic()
        _start_together(batch)
        t2 = time.monotonic()
        for server in batch:
            for note in server.notes:
                console.log(f"{server.name}: {note}")
        console.log(f"{names}: provisioned in {t1 - t0:.1f}s, healthy in {t2 - t1:.1f}s")
        done += [server.status() for server in batch]
    return done


def _batches(servers: list[Server]) -> list[list[Server]]:
    """Servers one by one, except the nodes of one cluster (`start_group`), which start together: none of
    them is healthy before a quorum of them runs."""
    out: list[list[Server]] = []
    for server in servers:
        group = getattr(server, "start_group", None)
        if group and out and getattr(out[-1][0], "start_group", None) == group:
            out[-1].append(server)
        else:
            out.append([server])
    return out


def _start_together(batch: list[Server]) -> None:
    side_by_side([server.start for server in batch])


def _backups_ready(started: set[str], console: Console) -> None:
    """Once the primary and S3 run: the pgBackRest repository and stanza for this cluster (made once per
    cluster; WAL archiving fails, visibly, until then)."""
    if profile() != "default" or not {"postgres", "s3"} <= started:
        return
    from kredete.stack import pgbackrest

    primary = PostgresPrimary()
    if pgbackrest.is_ready(primary.system_identifier()):
        return
    _make_repository(lambda: pgbackrest.setup_repository(primary), "", console)
    _replicas_streaming(started, console)


def _make_repository(setup, what: str, console: Console) -> None:
    """Run a pgBackRest repository setup with progress; a failure is logged (archiving fails visibly until a
    later `stack up` or `backup run` makes it), not raised: the servers themselves are up."""
    t0 = time.monotonic()
    try:
        with console.status(f"[bold]pgbackrest[/]: repository and stanza{what}"):
            repo = setup()
        console.log(f"pgbackrest: repository {repo} ready in {time.monotonic() - t0:.1f}s")
    except StackError as exc:
        console.log(f"pgbackrest: repository not ready, WAL archiving fails until it is: {exc}")


def _ha_backups_ready(started: set[str], console: Console) -> None:
    """The HA profile's pgBackRest repository and stanza, once its Patroni members and S3 all run (they may
    come up in separate `stack up` calls)."""
    if not any(n.startswith("ha-pg") or n == "s3" for n in started):
        return
    from kredete.stack import patroni, pgbackrest

    servers = {s.name: s for s in local_servers()}
    members = [s for name, s in servers.items() if name.startswith("ha-pg")]
    if not members or "s3" not in servers or not all(s.healthy() for s in (*members, servers["s3"])):
        return
    if pgbackrest.is_ready(members[0].system_identifier()):
        return
    _make_repository(lambda: patroni.setup_backups(members), " of the Patroni cluster", console)


def _replicas_streaming(started: set[str], console: Console, timeout_s: float = 30.0) -> None:
    """Turning archiving on restarts a new primary once; its replicas reconnect within seconds. Wait for
    them, so `stack up` does not hand over (or show) replicas that are about to stream again."""
    replicas = [s for s in local_servers() if s.name in started and isinstance(s, PostgresReplica)]
    deadline = time.monotonic() + timeout_s
    while replicas and time.monotonic() < deadline:
        replicas = [r for r in replicas if not r.healthy()]
        if replicas:
            time.sleep(0.25)
    for r in replicas:
        console.log(f"{r.name}: not streaming {timeout_s:.0f}s after the primary's restart")


def down(only: Iterable[str] | None = None) -> None:
    """Stop servers, each lane of `up` in reverse start order and the lanes side by side, the object store
    after every other server; data stays in `.local/`.

    Every server of the stack that runs from this `.local/` is stopped, also one whose store has since
    been made external (it would otherwise be left running, unmanaged).
    """
    servers = _select(all_servers(), _aliases(only, profile()))
    for lanes in _stop_phases(servers, HA_DEPENDS if profile() == "ha" else DEPENDS):
        _stop_lanes(lanes)


def _stop_phases(servers: list[Server], depends: dict[str, tuple[str, ...]]) -> list[list[list[Server]]]:
    """`servers` (in start order) as phases of lanes to stop: the lanes of a phase side by side, each lane in
    reverse start order with the Patroni leader after the other members. The object store is a phase of its
    own, the last: PostgreSQL's fast shutdown archives its last WAL segment to the pgBackRest repository in
    MinIO, and with MinIO already gone it waited out pgBackRest's timeout (a minute per stop)."""
    phases = ([s for s in servers if not s.name.startswith("s3")], [s for s in servers if s.name.startswith("s3")])
    return [[_leader_last(list(reversed(lane))) for lane in _lanes(phase, depends)] for phase in phases if phase]


def _stop_lanes(lanes: list[list[Server]]) -> None:
    """Stop each lane's servers in order, the lanes in parallel threads; the first failure is raised once
    every lane has finished (the other lanes are still stopped)."""

    def stop(lane: list[Server]) -> None:
        for server in lane:
            server.stop()

    side_by_side([functools.partial(stop, lane) for lane in lanes])


def _leader_last(servers: list[Server]) -> list[Server]:
    """The Patroni leader stops after the other members: stopped first, each remaining member took over in
    turn (a leader race per stop, about 10 s on a fresh HA stack)."""
    members = [s for s in servers if s.name.startswith("ha-pg")]
    if len(members) < 2:
        return servers
    from kredete.stack import patroni

    lead = patroni.leader(timeout=1.0)
    victim = next((s for s in members if lead and s.name == lead.get("name")), None)
    if victim is None:
        return servers
    out = [s for s in servers if s is not victim]
    last = max(i for i, s in enumerate(out) if s.name.startswith("ha-pg"))
    out.insert(last + 1, victim)
    return out


def reset(only: Iterable[str] | None = None) -> None:
    """Stop the servers, then delete their data (caches are kept). Needs no secrets."""
    servers = local_servers(only)
    names = [s.name for s in servers]
    if names:
        down(names)
    for server in reversed(servers):
        server.reset()


def status(only: Iterable[str] | None = None, profile_name: str | None = None) -> list[ServerStatus]:
    return [s.status() for s in plan(only, profile_name=profile_name)[0]]


def _short(path: str) -> str:
    from config.paths import REPO_ROOT

    return path.replace(str(REPO_ROOT) + "/", "")


def print_status(rows: list[ServerStatus], console: Console | None = None,
                 not_run: list[Skipped] | None = None) -> None:
    console = console or Console(width=160)
    table = Table(title="kredete local stack")
    for col in ("server", "version", "port", "pid", "healthy", "data dir", "real / fallback", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.version, str(r.port), str(r.pid or "-"),
                      "[green]yes[/]" if r.healthy else "[red]no[/]", _short(r.data_dir), r.kind, r.note)
    console.print(table)
    for s in not_run or []:
        style = "red" if s.refused else "dim"
        console.print(f"[{style}]{s.name}[/]: {escape(s.reason)}", highlight=False)
