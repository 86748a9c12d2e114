"""`kredete s3 setup|status`: the five buckets with versioning, object lock, encryption, lifecycle, policy."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kredete.commands.common import err, fail

if TYPE_CHECKING:
    from stores.objects.buckets import BucketReport

s3_app = typer.Typer(no_args_is_help=True, help="S3 buckets: create and configure them from the spec, show status.")


def register(app: typer.Typer) -> None:
    app.add_typer(s3_app, name="s3")


def _run(coro: Any) -> Any:
    from botocore.exceptions import ClientError

    from stores.errors import StoreError

    try:
        return asyncio.run(coro)
    except (StoreError, ClientError) as exc:
        fail(str(exc))


async def _with_objects(fn: Any) -> list[BucketReport]:
    from stores.registry import connect

    stores = await connect(("objects",))
    try:
        return await fn(stores.objects)
    finally:
        await stores.close()


def _table(title: str, reports: list[BucketReport], *, show_changes: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("bucket", no_wrap=True)
    for col in ("versioning", "object lock", "encryption", "lifecycle rules", "policy", "managed-only"):
        table.add_column(col)
    if show_changes:
        table.add_column("changed now")
    for r in reports:
        if not r.exists:
            table.add_row(r.name, "[red]missing[/]", "", "", "", "", "", *([""] if show_changes else []))
            continue
        lock = (f"{r.lock_mode or 'no default'} {r.retention_days}d" if r.lock_mode else "enabled, no default"
                ) if r.lock_enabled else "-"
        enc = f"{r.encryption}\nkey {r.kms_key_id}" if r.kms_key_id else (r.encryption or "[red]none[/]")
        row = [r.name, r.versioning, lock, enc, "\n".join(r.lifecycle) or "-", "deny non-TLS" if r.policy else "-",
               "\n".join(r.managed_only) or "-"]
        if show_changes:
            row.append("\n".join(r.changed) or "nothing")
        table.add_row(*row)
    Console().print(table)
    for r in reports:
        for problem in r.problems:
            err.print(f"[red]{r.name}:[/] {problem}", highlight=False)


@s3_app.command("setup")
def s3_setup(
    retention_days: Annotated[int, typer.Option("--retention-days", min=1,
                                                help="Default COMPLIANCE retention of the object-lock buckets.")]
    = 7 * 365,
    transitions: Annotated[bool, typer.Option("--transitions/--no-transitions",
                                              help="Also apply Standard->IA->Glacier transitions (needs storage "
                                                   "classes: AWS S3, or MinIO with remote tiers).")] = False,
) -> None:
    """Create the five buckets and apply the spec (idempotent: a re-run changes nothing)."""
    from config.settings import get_settings
    from stores.objects.buckets import ensure_buckets, specs_for

    specs = specs_for(get_settings().s3_bucket_prefix)
    reports = _run(_with_objects(lambda o: ensure_buckets(o, retention_days=retention_days, specs=specs,
                                                          transitions=transitions)))
    _table("S3 buckets (setup)", reports, show_changes=True)
    if any(r.problems for r in reports):
        raise typer.Exit(1)


@s3_app.command("status")
def s3_status() -> None:
    """Print each bucket's configuration as the server reports it; exit 1 when a bucket is missing."""
    from config.settings import get_settings
    from stores.objects.buckets import bucket_status, specs_for

    specs = specs_for(get_settings().s3_bucket_prefix)
    reports = _run(_with_objects(lambda o: bucket_status(o, specs=specs)))
    _table("S3 buckets", reports, show_changes=False)
    if not all(r.exists for r in reports):
        raise typer.Exit(1)
