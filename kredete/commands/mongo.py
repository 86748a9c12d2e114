"""`kredete mongo ensure-indexes|shard-commands|retention|capabilities|reconcile-outbox`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from kredete.commands.common import fail, with_credit_store

mongo_app = typer.Typer(no_args_is_help=True, help="MongoDB credit store: schema, sharding, retention, CDC.")


def register(app: typer.Typer) -> None:
    app.add_typer(mongo_app, name="mongo")


def _with_db(fn, *, keyset: bool = False):
    return with_credit_store(lambda store: fn(store.db), keyset=keyset)


@mongo_app.command("ensure-indexes")
def ensure_indexes() -> None:
    """Create collections (validators where supported) and every declared index; on FerretDB's PostgreSQL
    backend also the PostgreSQL indexes of its pushed-down filters and of the background jobs' range reads
    (CONCURRENTLY: reads and writes go on while they build); idempotent."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from config.settings import resolve
    from stores.errors import StoreError
    from stores.mongo.collections import ensure_schema
    from stores.mongo.pushdown import ensure_pushdown_indexes

    backend_url = resolve().ferretdb_postgres_url

    async def both(db):
        schema = await ensure_schema(db)
        try:
            pushdown = await ensure_pushdown_indexes(db, backend_url.get_secret_value() if backend_url else None)
        except StoreError as exc:
            fail(f"pushdown indexes: {exc}")
        return schema, pushdown

    report, pushdown = asyncio.run(_with_db(both))
    table = Table(title="credit store schema")
    table.add_column("collection")
    table.add_column("indexes")
    for name, idx in report.indexes.items():
        table.add_row(name, ", ".join(idx) or "-")
    out = Console()
    out.print(table)
    out.print(f"created: {', '.join(report.created) or 'nothing (all present)'}")
    out.print(f"server $jsonSchema validators: {report.validators}; server TTL indexes: {report.ttl}")
    for note in report.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    if pushdown.rows:
        pd = Table(title=f"pushdown indexes ({pushdown.backend.value}: GIN jsonb_path_ops on (_jsonb -> field); "
                         "btree on it for a (range) field)")
        for col in ("collection", "field", "PostgreSQL index", "status", "seconds", "size"):
            pd.add_column(col, justify="right" if col in ("seconds", "size") else "left")
        for r in pushdown.rows:
            pd.add_row(r.collection, r.field, r.index, r.status, f"{r.seconds:.2f}", f"{r.size_bytes / 1024:,.0f} KiB")
        out.print(pd)
    out.print(f"backend: {pushdown.backend.value}")
    for note in pushdown.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")


@mongo_app.command("shard-commands")
def shard_commands(db: Annotated[str | None, typer.Option(help="Database name (default: settings).")] = None) -> None:
    """Print the mongosh commands that shard the credit store on user_id."""
    from config.settings import get_settings
    from stores.mongo.collections import shard_commands as cmds

    for line in cmds(db or get_settings().mongo_db):
        typer.echo(line)


@mongo_app.command("retention")
def retention(dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, do not delete.")] = False) -> None:
    """Delete expired conversation/prompt logs and outbox events (what TTL indexes do where supported)."""
    from stores.mongo.retention import purge_expired

    counts = asyncio.run(_with_db(lambda db: purge_expired(db, dry_run=dry_run), keyset=True))
    verb = "would delete" if dry_run else "deleted"
    for name, n in counts.items():
        typer.echo(f"{name}: {verb} {n}")


@mongo_app.command("capabilities")
def capabilities() -> None:
    """Probe which MongoDB features the connected server supports."""
    from stores.mongo.capabilities import probe

    for feature, ok in asyncio.run(_with_db(probe)).items():
        typer.echo(f"{feature:16} {'yes' if ok else 'no'}")


@mongo_app.command("reconcile-outbox")
def reconcile_outbox(minutes: Annotated[int, typer.Option(help="Look back this many minutes.")] = 60) -> None:
    """Re-emit change events lost to a crash between a write and its outbox event."""
    from datetime import timedelta

    from stores.mongo.cdc import Outbox
    from stores.mongo.documents import now

    n = asyncio.run(_with_db(lambda db: Outbox(db).reconcile(now() - timedelta(minutes=minutes)), keyset=True))
    typer.echo(f"re-emitted {n} events")
