"""`kredete stack up|down|status|reset`."""

from __future__ import annotations

from typing import Annotated

import typer

from kredete.commands.common import fail

Only = Annotated[list[str] | None, typer.Option("--only", help="Limit to these servers (repeatable).")]

stack_app = typer.Typer(no_args_is_help=True, help="Provision, start, stop and inspect the local stack.")


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up(only: Only = None) -> None:
    """Provision what is missing, start every server, wait until healthy, print the table."""
    from kredete import stack
    from kredete.commands.common import err

    try:
        stack.up(only, console=err)
    except stack.StackError as exc:
        fail(str(exc))
    stack.print_status(stack.status(only))


@stack_app.command("down")
def stack_down(only: Only = None) -> None:
    """Stop the servers (data stays in .local/)."""
    from kredete import stack

    stack.down(only)
    stack.print_status(stack.status(only))


@stack_app.command("status")
def stack_status(only: Only = None) -> None:
    """Print what runs where; exit 1 when any server is not healthy."""
    from kredete import stack

    rows = stack.status(only)
    stack.print_status(rows)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@stack_app.command("reset")
def stack_reset(only: Only = None, yes: Annotated[bool, typer.Option("--yes")] = False) -> None:
    """Stop the servers and delete their data under .local/ (caches are kept)."""
    from kredete import stack

    if not yes:
        fail("this deletes local data; pass --yes")
    for server in reversed(stack.local_servers(only)):
        server.reset()
