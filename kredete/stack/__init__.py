"""The local stack: every server of the data tier, provisioned and run for real on this machine."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from kredete.settings import get_settings
from kredete.stack.base import Server, ServerStatus, StackError
from kredete.stack.ferretdb import FerretDBServer
from kredete.stack.minio import MinioReplicaServer, MinioServer
from kredete.stack.postgres import PostgresPrimary, PostgresReplica
from kredete.stack.redis import RedisServer

__all__ = ["Server", "ServerStatus", "StackError", "all_servers", "down", "print_status", "status", "up"]

# Which env URL, when set, means the store is external and the local server is not started.
_EXTERNAL_ENV = {
    "postgres": "postgres_url", "postgres-replica": "postgres_replica_url", "redis": "redis_url",
    "mongo": "mongo_url", "opensearch": "opensearch_url", "s3": "s3_url", "s3-dr": "s3_dr_url",
}


def all_servers() -> list[Server]:
    """Servers in start order (the replica needs its primary)."""
    from kredete.stack.opensearch import OpenSearchServer

    primary = PostgresPrimary()
    return [primary, PostgresReplica(primary), RedisServer(), FerretDBServer(), OpenSearchServer(),
            MinioServer(), MinioReplicaServer()]


def local_servers(only: Iterable[str] | None = None) -> list[Server]:
    """Servers the local stack runs: those whose store has no external URL configured."""
    settings = get_settings()
    wanted = set(only or [])
    servers = [s for s in all_servers() if getattr(settings, _EXTERNAL_ENV[s.name]) is None]
    if wanted:
        unknown = wanted - {s.name for s in all_servers()}
        if unknown:
            raise StackError(f"unknown server(s) {sorted(unknown)}; known: {[s.name for s in all_servers()]}")
        servers = [s for s in servers if s.name in wanted]
    return servers


def up(only: Iterable[str] | None = None, console: Console | None = None) -> list[ServerStatus]:
    """Provision and start (idempotently); return the status of each server started."""
    console = console or Console(stderr=True)
    done: list[ServerStatus] = []
    for server in local_servers(only):
        t0 = time.monotonic()
        with console.status(f"[bold]{server.name}[/]: provisioning"):
            server.provision()
        t1 = time.monotonic()
        with console.status(f"[bold]{server.name}[/]: starting"):
            server.start()
        t2 = time.monotonic()
        console.log(f"{server.name}: provisioned in {t1 - t0:.1f}s, healthy in {t2 - t1:.1f}s")
        done.append(server.status())
    return done


def down(only: Iterable[str] | None = None) -> None:
    """Stop servers in reverse start order; data stays in `.local/`."""
    for server in reversed(local_servers(only)):
        server.stop()


def status(only: Iterable[str] | None = None) -> list[ServerStatus]:
    return [s.status() for s in local_servers(only)]


def _short(path: str) -> str:
    from kredete.paths import REPO_ROOT

    return path.replace(str(REPO_ROOT) + "/", "")


def print_status(rows: list[ServerStatus], console: Console | None = None) -> None:
    console = console or Console(width=160)
    table = Table(title="kredete local stack")
    for col in ("server", "version", "port", "pid", "healthy", "data dir", "real / fallback", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.version, str(r.port), str(r.pid or "-"),
                      "[green]yes[/]" if r.healthy else "[red]no[/]", _short(r.data_dir), r.kind, r.note)
    console.print(table)
