"""`kredete backup run|list|verify`: pgBackRest backups of the PostgreSQL cluster (payments + credit store)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from kredete.commands.common import err, fail

backup_app = typer.Typer(no_args_is_help=True, help="pgBackRest backups: run one, list them, verify the repository.")


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")


@backup_app.command("run")
def backup_run(kind: Annotated[str, typer.Option("--type", help="full | diff | incr (an incr or diff with no "
                                                               "full before it becomes a full)")] = "incr") -> None:
    """Take a backup now (progress shown; Ctrl-C stops it and the next run resumes it). Audited."""
    from config.errors import StackError
    from kredete.drills.backups import run_backup

    if kind not in ("full", "diff", "incr"):
        fail(f"--type must be full, diff or incr, not {kind!r}")
    try:
        result = run_backup(kind, err)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        fail("interrupted: the backup was stopped; the next `backup run` resumes it", code=130)
    except StackError as exc:
        fail(escape(str(exc)))
    print(json.dumps(result))


@backup_app.command("list")
def backup_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Backups in the repository, the WAL archive range and the archiver's last success/failure."""
    from rich.console import Console
    from rich.table import Table

    from config.errors import StackError
    from kredete.drills.backups import backups, write_status
    from kredete.stack import pgbackrest

    try:
        items = backups()
        stanza = pgbackrest.info()
    except StackError as exc:
        fail(escape(str(exc)))
    status = write_status()
    if as_json:
        print(json.dumps({"backups": items, "archive": stanza.get("archive"), "status": status}, default=str))
        return
    table = Table(title=f"pgBackRest stanza {pgbackrest.STANZA} ({pgbackrest.repository()['bucket']})")
    for col in ("label", "type", "start", "stop", "database", "repository", "WAL start / stop"):
        table.add_column(col)
    from kredete.drills.backups import _ts

    for b in items:
        table.add_row(b["label"], b["type"], _ts(b["timestamp"]["start"]), _ts(b["timestamp"]["stop"]),
                      f"{b['info']['size'] / 1e6:.1f} MB", f"{b['info']['repository']['delta'] / 1e6:.1f} MB",
                      f"{b['archive']['start']} / {b['archive']['stop']}")
    console = Console(width=160)
    console.print(table)
    for a in stanza.get("archive") or []:
        console.print(f"WAL archive {a['id']}: {a.get('min')} .. {a.get('max')}")
    arch = status.get("archive", {})
    state = "[red]FAILING[/]" if arch.get("failing") else "[green]ok[/]"
    console.print(f"archiver: {state}; last archived {arch.get('last_archived_wal')} at "
                  f"{arch.get('last_archived_time')}; failed {arch.get('failed_count')} times, last "
                  f"{arch.get('last_failed_wal')} at {arch.get('last_failed_time')}")


@backup_app.command("verify")
def backup_verify() -> None:
    """Every backup and WAL file readable with the right checksum, and a WAL switch archived end to end."""
    from config.errors import StackError
    from kredete.drills import oplog
    from kredete.drills.backups import verify, write_status

    try:
        problems = verify()
    except StackError as exc:
        fail(escape(str(exc)))
    write_status()
    oplog.audit("backup.verify", "pgbackrest:kredete", decision="error" if problems else "allowed",
                reason="; ".join(problems)[:500] or None, console=err)
    if problems:
        for p in problems:
            err.print(f"[red]problem:[/] {escape(p)}")
        raise typer.Exit(1)
    err.print("[green]repository verified[/]: every backup and WAL file checks out, archiving works")


@backup_app.command("redis")
def backup_redis() -> None:
    """Stream an RDB snapshot from Redis (one per master of the cluster; AOF stays on) and ship it to the backups
    bucket. Audited."""
    from config.errors import StackError
    from kredete.drills import oplog
    from kredete.drills.redis_snapshots import backup

    try:
        with err.status("redis: streaming an RDB snapshot to the backups bucket"):
            result = backup()
    except StackError as exc:
        oplog.audit("backup.redis", "redis", decision="error", reason=str(exc)[:500], console=err)
        fail(escape(str(exc)))
    oplog.audit("backup.redis", "redis", console=err, **result)
    print(json.dumps(result))


@backup_app.command("redis-restore")
def backup_redis_restore(
    snapshot: Annotated[str, typer.Option("--snapshot", help="`latest` or a snapshot name: <UTC time>.cluster "
                                                         "(one RDB per master) or <UTC time>.rdb")] = "latest",
    target_dir: Annotated[str | None, typer.Option("--target-dir", help="new or empty dir")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="restart the local Redis on the snapshot (its AOF "
                                                            "and RDB are moved aside)")] = False,
) -> None:
    """Restore a Redis snapshot: into an empty dir (verified by loading it), or over the local Redis."""
    from pathlib import Path

    from config.errors import StackError
    from kredete.drills import oplog
    from kredete.drills.redis_snapshots import restore

    try:
        result = restore(snapshot, target_dir=Path(target_dir) if target_dir else None, replace=replace)
    except StackError as exc:
        fail(escape(str(exc)))
    oplog.audit("restore.redis", "redis", console=err, **result)
    print(json.dumps(result))
