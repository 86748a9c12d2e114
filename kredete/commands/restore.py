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
    reapply: Annotated[bool, typer.Option("--reapply/--no-reapply", help="with --replace: re-erase the subjects "
                                          "of every deletion receipt before the restored data serves (`kredete "
                                          "dsr reapply`)")] = True,
) -> None:
    """Restore the PostgreSQL cluster (payments and the credit store together) from pgBackRest. Audited.

    A backup taken before an erasure still holds the erased customer's rows (their encrypted fields stay
    unreadable: the data key is destroyed). With --replace, the restore then re-applies every erasure on record
    (the deletion receipts in the logs archive) so no erased customer serves again."""
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
    out = result.as_dict()
    if replace and reapply:
        out["dsr_reapply"] = _reapply_erasures()
    print(json.dumps(out, default=str))


def _reapply_erasures() -> dict:
    """`kredete dsr reapply` on the restored primary; a failure leaves the restore done but says it loudly."""
    from kredete.commands.dsr import _run

    try:
        done = _run(lambda svc: svc.reapply())
    except typer.Exit as exc:  # `_run` printed why
        fail("restored, but the erasures on record were NOT re-applied: run `kredete dsr reapply` before the "
             f"restored data serves (exit {exc.exit_code})")
    err.print(f"[green]erasures re-applied[/]: {done.get('subjects', 0)} subject(s) on record, "
              f"{done.get('present_here', 0)} present in the restored data")
    return done
