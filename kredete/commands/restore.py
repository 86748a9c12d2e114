"""`kredete restore --to latest|<time> [--target-dir D] [--set LABEL] [--replace]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kredete.commands.common import err, fail


def register(app: typer.Typer) -> None:
    app.command("restore")(restore_cmd)


def restore_cmd(
    to: Annotated[str, typer.Option("--to", help="`latest` or an ISO-8601 time (UTC when no zone)")] = "latest",
    target_dir: Annotated[Path | None, typer.Option("--target-dir", help="new or empty data dir (default "
                                                    ".local/restores/<time>/pgdata)")] = None,
    label: Annotated[str | None, typer.Option("--set", help="start from this backup label")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="restore over the local primary (its data dir is "
                                          "moved aside, not deleted) and rebuild the replicas")] = False,
) -> None:
    """Restore the PostgreSQL cluster (payments and the credit store together) from pgBackRest. Audited."""
    from config.errors import StackError
    from kredete.drills.restore import parse_target, restore

    try:
        result = restore(parse_target(to), target_dir=target_dir, label=label, replace=replace, console=err)
    except KeyboardInterrupt:
        fail("interrupted: nothing was promoted; rerun the restore into a new empty dir", code=130)
    except StackError as exc:
        fail(escape(str(exc)))
    err.print(f"[green]restored[/] {result.label} to {result.recovered_to or result.target} into "
              f"{result.target_dir} in {result.seconds}s")
    print(json.dumps(result.as_dict()))
