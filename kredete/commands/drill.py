"""`kredete drill restore|pitr|failover|search-node`: disaster-recovery and fault drills on the real local stack."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from kredete.commands.common import err, fail

drill_app = typer.Typer(no_args_is_help=True, help="Destroy for real under a write load, recover, account for "
                                                   "every acknowledged write. Last line: RPO= RTO= lost_acknowledged= "
                                                   "(search-node: failed_queries= lost_acknowledged= green_after_s=)")

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


@drill_app.command("search-node")
def search_node(
        node: Annotated[str, typer.Option(help="Node to kill: a name, `primary` (holds the knowledge index's primary "
                                               "shard) or `manager` (the elected cluster manager).")] = "primary",
        docs: Annotated[int, typer.Option(min=0, help="Synthetic customer documents besides the KB.")] = 300,
        down_s: Annotated[float, typer.Option(min=0, help="Seconds the node stays dead.")] = 20.0,
        warmup_s: Annotated[float, typer.Option(min=0, help="Seconds of load before the kill.")] = 10.0,
        after_s: Annotated[float, typer.Option(min=0, help="Seconds of load after green.")] = 10.0,
        readers: Annotated[int, typer.Option(min=1, max=16, help="Concurrent search_knowledge loops.")] = 2,
        out: Annotated[str | None, typer.Option(help="Write the result as JSON here "
                                                     "[.local/drills/search-node-<time>.json].")] = None) -> None:
    """Kill -9 one node of the ha profile's search cluster under load, restart it, measure. Last line:
    `failed_queries=<N> lost_acknowledged=<N> green_after_s=<s>`."""
    import asyncio
    from datetime import UTC, datetime
    from pathlib import Path

    from config.paths import local_dir
    from config.settings import resolve
    from kredete import stack
    from kredete.drills import search_node as drill
    from kredete.stack.base import StackError
    from kredete.stack.opensearch_cluster import SearchCluster
    from stores.errors import StoreError

    if stack.profile() != "ha":
        fail("the search-node drill needs the three-node cluster: KREDETE_STACK_PROFILE=ha and "
             "`kredete stack up --profile ha` first")
    settings = resolve()
    cfg = drill.DrillConfig(node=node, docs=docs, down_s=down_s, warmup_s=warmup_s, after_s=after_s, readers=readers)
    try:
        result = asyncio.run(drill.run(
            cfg, cluster=SearchCluster(), search_url=settings.opensearch_url.get_secret_value(),
            mongo_url=settings.mongo_url.get_secret_value(),
            master_key=settings.field_encryption_master_key.get_secret_value(), say=lambda line: err.log(line)))
    except (StackError, StoreError, ValueError, TimeoutError) as exc:
        fail(str(exc))
    path = Path(out) if out else local_dir() / "drills" / f"search-node-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    drill.save(result, path)
    r = result
    err.print(f"killed {r.killed} ({r.killed_role}); restart {r.restart_s}s; worst status {r.worst_status_after_kill}; "
              f"green again {r.green_after_s}s after the kill, with every node {r.green_all_nodes_s}s",
              highlight=False)
    err.print(f"queries: {r.queries}; failed: {r.failed_by_kind or 'none'}"
              + (f", between {r.failure_window_s[0]}s and {r.failure_window_s[1]}s after the kill"
                 if r.failure_window_s else ""), highlight=False)
    for f in r.failures[:5]:
        err.print(f"  {f}", highlight=False)
    err.print(f"audit writes {r.audit_writes}; follower {r.follower}", highlight=False)
    err.print(f"recall@10 before {r.recall_at_10['before']:.3f}, after {r.recall_at_10['after']:.3f}; "
              f"memory {r.memory_mb} MB; result {path}", highlight=False)
    print(r.line())
