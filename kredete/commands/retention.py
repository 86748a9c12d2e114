"""`kredete retention plan|run|policy`: the retention policy (config/retention.toml) applied to every store."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from kredete.commands.common import err, fail

retention_app = typer.Typer(no_args_is_help=True, help="Retention policy: plan (dry run) and run.")

Policy = Annotated[str | None, typer.Option("--policy", help="Policy file (default: KREDETE_RETENTION_POLICY or "
                                                             "config/retention.toml).", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(retention_app, name="retention")


def _table(items, *, ran: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("dataset", "action", "by", "what", "due", *(["done"] if ran else []), "error",
                  title="retention run" if ran else "retention plan (dry run: nothing changed)")
    for i in items:
        table.add_row(i.dataset, i.action, i.enforced_by, i.what, str(i.count or ""),
                      *([str(i.done or "")] if ran else []), i.error or "")
    Console(width=220).print(table)


def _go(apply: bool, policy: str | None):
    from kredete.commands.db import _importable

    _importable()
    from services.retention import RetentionService
    from stores.errors import StoreError

    async def go():
        svc = await RetentionService.open(policy_path=policy)
        try:
            return await (svc.run() if apply else svc.plan())
        finally:
            await svc.close()

    try:
        return asyncio.run(go())
    except StoreError as exc:
        fail(str(exc))


@retention_app.command("plan")
def plan(policy: Policy = None) -> None:
    """What a run would do now, per dataset, and how much (nothing changes)."""
    items = _go(False, policy)
    _table(items, ran=False)
    if any(i.error for i in items):
        raise typer.Exit(1)


@retention_app.command("run")
def run(policy: Policy = None,
        every: Annotated[float | None, typer.Option("--every", help="Run again every N hours (a foreground "
                                                                    "scheduler; otherwise use cron/systemd).",
                                                    show_default=False)] = None) -> None:
    """Apply the policy: archive and drop audit partitions, purge expired rows and logs, roll indices over."""
    while True:
        items = _go(True, policy)
        _table(items, ran=True)
        if every is None:
            if any(i.error for i in items):
                raise typer.Exit(1)
            return
        err.print(f"next run in {every:g} h")
        time.sleep(every * 3600)


@retention_app.command("policy")
def show_policy(policy: Policy = None) -> None:
    """The policy file as the code reads it."""
    from rich.console import Console
    from rich.table import Table

    from config.retention import load_policy

    p = load_policy(policy)
    table = Table("dataset", "action", "days", "archive", "by", "why")
    for d in p.dataset:
        table.add_row(d.name, d.action, str(d.days), str(d.archive_days or ""), d.enforced_by, d.why)
    Console(width=220).print(table)
