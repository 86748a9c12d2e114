"""`kredete stack up|down|status|reset`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from kredete.commands.common import fail

Only = Annotated[list[str] | None, typer.Option("--only", help="Limit to these servers (repeatable).")]
Profile = Annotated[str | None, typer.Option("--profile", help="default (primary + 2 replicas, pgBackRest), ha "
                                             "(Patroni over 3-member etcd, a three-node search cluster) or lean "
                                             "(the primary alone, no WAL archive: size runs); default: "
                                             "KREDETE_STACK_PROFILE")]


def _profile(name: str | None) -> None:
    if name:
        from kredete import stack

        try:
            stack.use_profile(name)
        except stack.StackError as exc:
            fail(str(exc))

stack_app = typer.Typer(no_args_is_help=True, help="Provision, start, stop and inspect the local stack.")


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up(only: Only = None, profile: Profile = None) -> None:
    """Provision what is missing, start every server, wait until healthy, print the table."""
    _profile(profile)
    import time

    from kredete import stack
    from kredete.commands.common import err

    t0 = time.monotonic()
    try:
        stack.up(only, console=err)
    except stack.StackError as exc:
        fail(str(exc))
    err.log(f"stack up ({stack.profile()} profile): {time.monotonic() - t0:.1f}s")
    stack.print_status(stack.status(only), not_run=stack.skipped(only))


@stack_app.command("down")
def stack_down(only: Only = None, profile: Profile = None) -> None:
    """Stop the servers (data stays in .local/)."""
    _profile(profile)
    from kredete import stack

    try:
        stack.down(only)
    except stack.StackError as exc:
        fail(str(exc))
    stack.print_status(stack.status(only), not_run=stack.skipped(only))


@stack_app.command("status")
def stack_status(only: Only = None, profile: Profile = None) -> None:
    """Print what runs where (and what is external) and Prometheus' scrape targets; exit 1 when a server is
    unhealthy or cannot run, or a target is not up."""
    _profile(profile)
    from config.secrets import local_secrets
    from kredete import stack
    from kredete.commands.common import err

    try:
        rows, not_run = stack.status(only), stack.skipped(only)
    except stack.StackError as exc:
        fail(str(exc))
    stack.print_status(rows, not_run=not_run)
    targets_ok = True
    if any(r.name == "prometheus" and r.healthy for r in rows):
        from rich.console import Console

        from kredete.stack.prometheus import print_targets

        targets_ok = print_targets(Console(width=160))
    secrets_ok = True
    try:
        local_secrets()
    except stack.StackError as exc:
        secrets_ok = False
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
    if not (secrets_ok and targets_ok) or not all(r.healthy for r in rows) or any(s.refused for s in not_run):
        raise typer.Exit(1)


@stack_app.command("rolling-restart")
def stack_rolling_restart() -> None:
    """Restart the search cluster one node at a time (ha profile); searches keep being answered."""
    from kredete import stack
    from kredete.commands.common import err
    from kredete.stack.opensearch_cluster import SearchCluster

    if stack.profile() != "ha":
        fail("the rolling restart is for the ha profile's search cluster: KREDETE_STACK_PROFILE=ha and "
             "`kredete stack up --profile ha` first")
    try:
        steps = SearchCluster().rolling_restart(lambda line: err.log(line))
    except stack.StackError as exc:
        fail(str(exc))
    for s in steps:
        err.print(f"{s['node']}: down {s['down_s']}s, green again {s['green_s']}s after it rejoined "
                  f"({s['total_s']}s in all)", highlight=False)


@stack_app.command("reset")
def stack_reset(only: Only = None, yes: Annotated[bool, typer.Option("--yes")] = False) -> None:
    """Stop the servers and delete their data under .local/ (caches are kept)."""
    from kredete import stack

    if not yes:
        fail("this deletes local data; pass --yes")
    try:
        stack.reset(only)
    except stack.StackError as exc:
        fail(str(exc))
