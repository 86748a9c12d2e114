"""`kredete ops status` (one screen; exit 1 when anything is critical) and `kredete ops slow-queries`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

ops_app = typer.Typer(no_args_is_help=True, help="Operate the data tier: health at a glance, slow statements.")


def register(app: typer.Typer) -> None:
    app.add_typer(ops_app, name="ops")


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(title: str, *cols: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False, pad_edge=False, box=None, header_style="bold")
    for c in cols:
        table.add_column(c, overflow="fold")
    return table


def render(status, console: Console) -> None:  # status: kredete.ops.status.OpsStatus
    ok, bad = "[green]ok[/]", "[red]DOWN[/]"
    stores = _table("Stores", "store", "instance", "health", "detail")
    for s in status.stores:
        stores.add_row(s.store, s.instance, ok if s.ok else bad, escape(s.detail))
    replicas = _table("Replication", "replica", "streaming", "lag", "replay delay")
    for r in status.replicas:
        replicas.add_row(r.replica, "yes" if r.streaming else "[red]no[/]", _bytes(r.lag_bytes),
                         "-" if r.replay_delay_s is None else f"{r.replay_delay_s:.1f} s")
    pools = _table("Pools", "process", "pool", "in use / max", "waiting")
    for p in status.pools:
        colour = "red" if p.waiting else ("yellow" if p.max and p.in_use >= p.max else "default")
        pools.add_row(p.instance, p.pool, f"[{colour}]{p.in_use} / {p.max}[/]", str(p.waiting))
    disk = _table("Disk", "store", "data", "filesystem used")
    for d in status.disk:
        colour = "red" if d.fs_used_ratio >= 0.95 else "yellow" if d.fs_used_ratio >= 0.85 else "default"
        disk.add_row(d.store, _bytes(d.data_bytes), f"[{colour}]{d.fs_used_ratio:.0%}[/]")
    slow = _table("Top statements (pg_stat_statements, by total time)", "db", "calls", "mean", "total", "statement")
    for st in status.statements or []:
        slow.add_row(st.datname, str(st.calls), f"{st.mean_ms:.1f} ms", f"{st.total_s:.1f} s",
                     escape(st.statement[:90]))
    alerts = _table("Alerts", "state", "severity", "alert", "summary")
    for a in status.alerts:
        colour = "red" if a.severity == "critical" and a.state == "firing" else "yellow"
        alerts.add_row(f"[{colour}]{a.state}[/]", a.severity, a.name, escape(a.summary[:100]))
    parts: list = []
    if not status.prometheus:
        parts.append("[red]Prometheus does not answer: store health, lag, pools, disk and alerts are unknown[/]")
    parts += [stores, replicas if status.replicas else "[dim]Replication: no replica in the stack[/]"]
    parts += [pools if status.pools else "[dim]Pools: no application process is being scraped[/]", disk]
    parts.append(slow if status.statements else f"[dim]{escape(status.statements_note or 'no statements')}[/]")
    parts.append(alerts if status.alerts else "[green]No alert firing or pending[/]")
    critical = status.critical
    verdict = ("[red bold]CRITICAL[/]: " + escape("; ".join(critical[:4]))) if critical else "[green bold]OK[/]"
    console.print(Panel(Group(*parts), title="kredete ops status", subtitle=verdict, expand=False))


@ops_app.command("status")
def ops_status(
    top: Annotated[int, typer.Option(help="Slow statements to show")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON")] = False,
) -> None:
    """Health per store, replica lag, pool use, top slow statements, disk, alerts; exit 1 when critical."""
    from kredete.ops.status import gather

    status = gather(top=top)
    if as_json:
        typer.echo(json.dumps({**status.model_dump(mode="json"), "critical": status.critical}, indent=2))
    else:
        render(status, Console(width=150))
    if status.critical:
        raise typer.Exit(1)


@ops_app.command("slow-queries")
def slow_queries(
    top: Annotated[int, typer.Option("--top", min=1, max=500, help="How many statements")] = 10,
    order: Annotated[str, typer.Option(help="total, mean, max or calls")] = "total",
    database: Annotated[str | None, typer.Option(help="Only this database")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    log: Annotated[bool, typer.Option("--log", help="Entries of the server's slow-statement log instead, with "
                                                    "the MCP request id of each")] = False,
    request: Annotated[str | None, typer.Option(help="With --log: only this request id")] = None,
) -> None:
    """Normalised statements from pg_stat_statements (constants as $n), slowest first; or, with --log, the
    slow-statement log of the local PostgreSQL servers with the request id of each entry."""
    import asyncio

    from kredete.commands.common import fail
    from kredete.ops.status import top_statements

    if log:
        from kredete.ops.slowlog import stack_slow_entries

        found = stack_slow_entries(request_id=request, limit=top)
        if as_json:
            typer.echo(json.dumps([e.model_dump() for e in found], indent=2))
            return
        table = Table(title=f"slow-statement log of the local PostgreSQL servers (newest {top})")
        for col in ("server", "at", "ms", "request id", "who", "statement"):
            table.add_column(col, overflow="fold")
        for e in found:
            table.add_row(e.server, e.at, f"{e.duration_ms:.1f}", e.request_id or "-", e.who, escape(e.statement))
        Console(width=160).print(table)
        return

    if order not in ("total", "mean", "max", "calls"):
        fail("--order must be total, mean, max or calls")
    try:
        rows = asyncio.run(top_statements(top, order=order, database=database))
    except Exception as exc:
        fail(f"cannot read pg_stat_statements: {str(exc).splitlines()[0]}")
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no statements recorded yet")
        return
    table = Table(title=f"pg_stat_statements: top {top} by {order}")
    for col in ("database", "calls", "mean", "total", "statement"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.datname, str(r.calls), f"{r.mean_ms:.2f} ms", f"{r.total_s:.2f} s", escape(r.statement))
    Console(width=160).print(table)
