"""`kredete drill restore|pitr|failover`: disaster-recovery drills on the real local stack."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from kredete.commands.common import err, fail

drill_app = typer.Typer(no_args_is_help=True, help="Destroy for real under a write load, recover, account for "
                                                   "every acknowledged write. Last line: RPO= RTO= lost_acknowledged=")

Users = Annotated[int, typer.Option("--users", min=1, help="seeded users the load writes as (`kredete seed` "
                                                          "--users N first)")]
Load = Annotated[float, typer.Option("--load-s", min=1, help="seconds of write load before the cut")]
Goal = Annotated[float, typer.Option("--rpo-goal-s", help="writes acknowledged earlier than this before the cut "
                                                          "must survive")]


def register(app: typer.Typer) -> None:
    app.add_typer(drill_app, name="drill")


def _finish(report, as_json: bool) -> None:
    from kredete.drills.checks import print_report

    print_report(report, err)
    if as_json:
        print(json.dumps(report.as_dict()))
    print(report.last_line())
    if not report.ok:
        raise typer.Exit(1)


@drill_app.command("restore")
def drill_restore(users: Users = 10, load_s: Load = 20.0, rpo_goal_s: Goal = 60.0,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """kill -9 the primary and delete its data dir under load; restore from pgBackRest alone."""
    from config.errors import StackError
    from kredete.drills.recovery import run

    try:
        report = run("restore", users=users, load_s=load_s, rpo_goal_s=rpo_goal_s, console=err)
    except StackError as exc:
        fail(escape(str(exc)))
    _finish(report, as_json)


@drill_app.command("pitr")
def drill_pitr(users: Users = 10, load_s: Load = 20.0,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """TRUNCATE under load, restore to just before it, get every earlier row back (payments and credit store)."""
    from config.errors import StackError
    from kredete.drills.recovery import run

    try:
        report = run("pitr", users=users, load_s=load_s, console=err)
    except StackError as exc:
        fail(escape(str(exc)))
    _finish(report, as_json)


@drill_app.command("failover")
def drill_failover(users: Users = 10, load_s: Load = 20.0,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """HA profile: kill -9 the Patroni leader under load; the synchronous standby takes over, nothing lost."""
    from config.errors import StackError
    from kredete.drills.failover import run

    try:
        report = run(users=users, load_s=load_s, console=err)
    except StackError as exc:
        fail(escape(str(exc)))
    _finish(report, as_json)
