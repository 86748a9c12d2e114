"""`kredete search health|replicas|snapshot|snapshots|restore-snapshot`: the search cluster's operations.

They join the `search` command group (its index commands live with `kredete ingest`). Snapshots go to the
S3 backups bucket through OpenSearch's `repository-s3` plugin.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from kredete.commands.common import err, fail


def register(app: typer.Typer) -> None:
    from kredete.commands.ingest import search_app

    search_app.command("health")(health)
    search_app.command("replicas")(replicas)
    search_app.command("snapshot")(snapshot)
    search_app.command("snapshots")(snapshots)
    search_app.command("restore-snapshot")(restore_snapshot)


def _run(coro: Any) -> Any:
    from stores.errors import StoreError

    try:
        return asyncio.run(coro)
    except StoreError as exc:
        fail(str(exc))


def health() -> None:
    """Cluster health, nodes (zone, role, heap) and the shards that are not active; exit 1 unless green."""
    _run(_health())


async def _health() -> None:
    from rich.table import Table

    from stores.registry import connect

    stores = await connect(("search",))
    try:
        search = stores.search
        h = await search.cluster_health()
        nodes = await search.call(search.os.cat.nodes(format="json", h="name,node.role,cluster_manager,heap.percent,"
                                                                       "ram.percent,cpu"))
        attrs = await search.call(search.os.cat.nodeattrs(format="json", h="node,attr,value"))
        zone = {a["node"]: a["value"] for a in attrs if a.get("attr") == "zone"}
        table = Table("node", "zone", "roles", "manager", "heap %", "cpu %", title=f"cluster {h.cluster_name}: "
                      f"{h.status}, {h.number_of_nodes} nodes, {h.active_shards} active / {h.unassigned_shards} "
                      f"unassigned shards, replicas per index {search.replica_count()}")
        for n in sorted(nodes, key=lambda n: n["name"]):
            table.add_row(n["name"], zone.get(n["name"], "-"), n.get("node.role", ""),
                          "*" if n.get("cluster_manager") == "*" else "", str(n.get("heap.percent")), str(n.get("cpu")))
        err.print(table)
        if h.unassigned_shards:
            shards = await search.call(search.os.cat.shards(format="json",
                                                            h="index,shard,prirep,state,unassigned.reason"))
            for s in shards:
                if s.get("state") != "STARTED":
                    err.print(f"  {s['index']} shard {s['shard']} {'primary' if s['prirep'] == 'p' else 'replica'}: "
                              f"{s['state']} ({s.get('unassigned.reason') or '-'})", highlight=False)
    finally:
        await stores.close()
    if h.status != "green":
        raise typer.Exit(1)


def replicas() -> None:
    """Put KREDETE_SEARCH_REPLICAS on every existing index of this prefix (a live settings update)."""
    _run(_replicas())


async def _replicas() -> None:
    from stores.registry import connect

    stores = await connect(("search",))
    try:
        changed = await stores.search.set_replicas()
        want = stores.search.replica_count()
        if not changed:
            err.print(f"every {stores.search.prefix}-* index already has {want} replica(s)")
        for index, (before, after) in changed.items():
            err.print(f"{index}: {before} -> {after} replica(s)", highlight=False)
        if changed and want:
            h = await stores.search.cluster_health(wait_for="green", timeout_s=300)
            err.print(f"cluster {h.cluster_name}: {h.status}", highlight=False)
    finally:
        await stores.close()


Name = Annotated[str | None, typer.Argument(help="Snapshot name [<prefix>-<UTC time>].")]


def snapshot(name: Name = None) -> None:
    """Snapshot every index of this prefix (with aliases) into the backups bucket (s3://<bucket>/opensearch/...)."""
    _run(_snapshot(name))


def _repository(stores: Any, from_path: str | None = None) -> Any:
    from stores.search.snapshots import SnapshotRepository

    bucket = f"{stores.settings.s3_bucket_prefix}-backups"
    if from_path:
        return SnapshotRepository(stores.search, bucket, base_path=from_path, name="kredete-backups-import")
    return SnapshotRepository(stores.search, bucket)


async def _snapshot(name: str | None) -> None:
    from stores.registry import connect

    stores = await connect(("search",))
    try:
        repo = _repository(stores)
        with err.status("registering the repository"):
            where = await repo.ensure()
        with err.status(f"snapshotting {stores.search.prefix}-* into {where}"):
            info = await repo.create(name)
        err.print(f"snapshot {info.name}: {info.state}, {len(info.indices)} indexes in {info.seconds:.1f}s "
                  f"({where})", highlight=False)
    finally:
        await stores.close()


def snapshots() -> None:
    """List the snapshots of this cluster's repository."""
    _run(_snapshots())


async def _snapshots() -> None:
    from rich.table import Table

    from stores.registry import connect

    stores = await connect(("search",))
    try:
        repo = _repository(stores)
        where = await repo.ensure()
        table = Table("snapshot", "state", "started (UTC)", "seconds", "indexes", title=where)
        for s in await repo.list():
            table.add_row(s.name, s.state, f"{s.started:%Y-%m-%d %H:%M:%S}" if s.started else "-", f"{s.seconds:.1f}",
                          str(len(s.indices)))
        err.print(table)
    finally:
        await stores.close()


def restore_snapshot(
        name: Annotated[str, typer.Argument(help="Snapshot to restore (see `kredete search snapshots`).")],
        replace: Annotated[bool, typer.Option("--replace", help="Delete the live indexes it brings back (and the "
                                                               "ones now behind their aliases) first.")] = False,
        rename_prefix: Annotated[str | None, typer.Option("--rename-prefix", help="Restore beside the live indexes "
                                                                                  "as <prefix><index>, no aliases.")]
        = None,
        from_path: Annotated[str | None, typer.Option("--from-path", help="Read the snapshot from another cluster's "
                                                                          "base path in the bucket (read-only), e.g. "
                                                                          "opensearch/kredete.")] = None) -> None:
    """Restore a snapshot's indexes; refuses to overwrite a live index unless --replace."""
    _run(_restore(name, replace, rename_prefix, from_path))


async def _restore(name: str, replace: bool, rename_prefix: str | None, from_path: str | None) -> None:
    from stores.registry import connect

    stores = await connect(("search",))
    try:
        repo = _repository(stores, from_path)
        await repo.ensure(readonly=bool(from_path))
        with err.status(f"restoring {name}"):
            report = await repo.restore(name, replace=replace, rename_prefix=rename_prefix)
        err.print(f"restored {name}: {len(report.indices)} indexes, {report.documents} documents in "
                  f"{report.seconds:.1f}s", highlight=False)
    finally:
        await stores.close()
