"""`kredete s3 setup|status|access-log`: buckets, principals, tiers and replication; the access log read back."""

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
    from config.settings import resolve
    from stores.objects.principals import admin_objects

    objects = await admin_objects(resolve()).connect()
    try:
        return await fn(objects)
    finally:
        await objects.close()


def _table(title: str, reports: list[BucketReport], *, show_changes: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("bucket", no_wrap=True)
    for col in ("versioning", "object lock", "encryption", "lifecycle rules", "policy", "replication",
                "not applied"):
        table.add_column(col)
    if show_changes:
        table.add_column("changed now")
    for r in reports:
        if not r.exists:
            table.add_row(r.name, "[red]missing[/]", "", "", "", "", "", "", *([""] if show_changes else []))
            continue
        lock = (f"{r.lock_mode or 'no default'} {r.retention_days}d" if r.lock_mode else "enabled, no default"
                ) if r.lock_enabled else "-"
        enc = f"{r.encryption}\nkey {r.kms_key_id}" if r.kms_key_id else (r.encryption or "[red]none[/]")
        rep = "\n".join("-> " + arn.rsplit(":", 1)[-1] for arn in r.replication) or "-"
        row = [r.name, r.versioning, lock, enc, "\n".join(r.lifecycle) or "-", "yes" if r.policy else "-", rep,
               "\n".join(r.not_applied) or "-"]
        if show_changes:
            row.append("\n".join(r.changed) or "nothing")
        table.add_row(*row)
    Console(width=220).print(table)
    for r in reports:
        for problem in r.problems:
            err.print(f"[red]{r.name}:[/] {problem}", highlight=False)


@s3_app.command("setup")
def s3_setup(
    retention_days: Annotated[int | None, typer.Option(
        "--retention-days", min=1, help="Override the default COMPLIANCE retention of every object-lock bucket "
        "(default: each bucket's own: documents and backups 7 years, logs-archive 1 year).",
        show_default=False)] = None,
) -> None:
    """Make every S3 server match the spec (idempotent: a re-run changes nothing).

    Cold tier buckets, the principals' users and policies (primary, DR, cold), the DR buckets, the remote tiers,
    the five buckets with lifecycle transitions, replication to DR. Stops at the first thing a server refuses
    (a policy it rejects, a tier it cannot reach), naming it and the server's reason.
    """
    from config.settings import resolve
    from stores.objects.setup import setup_all

    with err.status("S3 setup") as status:
        report = _run(setup_all(resolve(), retention_days=retention_days,
                                progress=lambda m: status.update(f"S3 setup: {m}")))
    _table("S3 buckets, primary (setup)", report.buckets, show_changes=True)
    if report.dr_buckets:
        _table("S3 buckets, DR region (replication targets)", report.dr_buckets, show_changes=True)
    if report.cold_buckets:
        _table("S3 cold tier buckets (remote tiers " + ", ".join(report.tiers) + ")", report.cold_buckets,
               show_changes=True)
    _principals(report.principals)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    if any(r.problems for r in report.buckets + report.dr_buckets + report.cold_buckets):
        raise typer.Exit(1)


def _principals(rows: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="S3 principals (no service uses the root user)")
    for col in ("principal", "user", "on", "grant"):
        table.add_column(col)
    for p in rows:
        table.add_row(p.name, p.user, ", ".join(p.servers), p.grant)
    Console(width=220).print(table)


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


@s3_app.command("access-log")
def s3_access_log(
    bucket: Annotated[str, typer.Option("--bucket", help="Bucket whose accesses to show (`-` for calls on no "
                                                         "bucket, e.g. ListBuckets).")],
    since: Annotated[str, typer.Option("--since", help="ISO time (2026-12-06T08:00) or an age: 15m, 2h, 7d.")],
    until: Annotated[str | None, typer.Option("--until", help="ISO time or age; default now.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this object key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 1000,
) -> None:
    """Who did what to a bucket's objects, when, from where, with what result (the archived MinIO audit log,
    read as the `auditor` principal). Records arrive within seconds of the call."""
    from config.settings import resolve
    from stores.objects.access_log import AccessLogArchive
    from stores.objects.buckets import logs_bucket
    from stores.objects.principals import objects_for

    start, end = _when(since, "--since"), (_when(until, "--until") if until else None)
    settings = resolve()

    async def read() -> list[Any]:
        objects = objects_for(settings, "auditor")
        try:
            return await AccessLogArchive(objects, logs_bucket(settings.s3_bucket_prefix)).read(
                "" if bucket == "-" else bucket, start, end, key=key, limit=limit)
        finally:
            await objects.close()

    records = _run(read())
    if as_json:
        for r in records:
            typer.echo(r.model_dump_json())
        return
    from rich.console import Console
    from rich.table import Table

    what = bucket + (f" / {key}" if key else "")
    table = Table(title=f"S3 access log: {what} since {start:%Y-%m-%d %H:%M:%S}Z")
    for col in ("time (UTC)", "site", "principal", "api", "key", "version", "result", "from", "presigned"):
        table.add_column(col, overflow="fold")
    for r in records:
        ok = 200 <= r.status_code < 400
        table.add_row(f"{r.time:%Y-%m-%d %H:%M:%S.%f}"[:-3], r.site or "-", r.principal or "(anonymous)", r.api,
                      r.key or "-", (r.version_id or "-")[:12],
                      f"[{'green' if ok else 'red'}]{r.status_code} {r.result}[/]", r.remote_ip,
                      "yes" if r.presigned else "")
    Console(width=200).print(table)
    err.print(f"{len(records)} records", highlight=False)


def _when(text: str, option: str) -> Any:
    import re
    from datetime import UTC, datetime, timedelta

    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {text!r}: give an ISO time (2026-12-06T08:00, UTC unless it has an offset) or an age "
             "(15m, 2h, 7d)")
    return t if t.tzinfo else t.replace(tzinfo=UTC)
