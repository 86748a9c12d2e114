"""`kredete` command line: local stack, database, seeding, MCP server, tokens, ingestion, evals."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="Provision, start, stop and inspect the local stack.")
app.add_typer(stack_app, name="stack")

err = Console(stderr=True)

Only = Annotated[list[str] | None, typer.Option("--only", help="Limit to these servers (repeatable).")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


@stack_app.command("up")
def stack_up(only: Only = None) -> None:
    """Provision what is missing, start every server, wait until healthy, print the table."""
    from kredete import stack

    try:
        stack.up(only, console=err)
    except stack.StackError as exc:
        _fail(str(exc))
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
        _fail("this deletes local data; pass --yes")
    for server in reversed(stack.local_servers(only)):
        server.reset()


def main() -> None:  # pragma: no cover - entry point
    app(sys.argv[1:])
