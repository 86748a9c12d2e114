"""`kredete capacity report`: bytes and rows per table, collection, index and bucket, growth, limits, cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

capacity_app = typer.Typer(no_args_is_help=True, help="Capacity and cost of the data tier.")


def register(app: typer.Typer) -> None:
    app.add_typer(capacity_app, name="capacity")


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@capacity_app.command("report")
def report(
    growth: Annotated[float | None, typer.Option(help="Monthly growth, e.g. 0.15 (default: "
                                                 "KREDETE_CAPACITY_GROWTH_MONTHLY, 15 %)")] = None,
    months: Annotated[int | None, typer.Option(help="Months to project (default 24)")] = None,
    out: Annotated[Path, typer.Option(help="Directory for capacity.json and capacity.png")] = Path(
        ".local/capacity"),
    top: Annotated[int, typer.Option(help="Largest items listed per store")] = 5,
) -> None:
    """Measure every store, project it, find the month each crosses its limit, price it; JSON + PNG."""
    import asyncio

    from config.monitoring import load_monitoring_settings
    from config.settings import resolve
    from kredete.commands.common import fail
    from kredete.ops.capacity import PriceTable, build_report, plot

    if growth is not None and not 0 <= growth <= 10:
        fail("--growth must be between 0 and 10 (a fraction per month: 0.15 is 15 %)")
    if months is not None and not 1 <= months <= 120:
        fail("--months must be between 1 and 120")
    monitor = load_monitoring_settings()
    settings = resolve()
    from kredete.ops.capacity import measure

    usage, users = asyncio.run(measure(settings))
    result = build_report(usage, users, monitor, PriceTable.load(), growth=growth, months=months)
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "capacity.png")
    console = Console(width=150)
    console.print(f"[bold]{escape(result['headline'])}[/]")
    table = Table(title=f"Stores (growth {result['growth_monthly']:.0%}/month, {result['months']} months)")
    for col in ("store", "size", "rows/docs", "per user", "limit", "crosses limit", "cost/month now",
                f"month {result['months']}"):
        table.add_column(col)
    for s in result["stores"]:
        if s["error"]:
            table.add_row(s["store"], f"[red]{escape(s['error'])}[/]", "", "", "", "", "", "")
            continue
        cross = ("now" if s["crosses_limit_month"] == 0 else f"month {s['crosses_limit_month']}"
                 if s["crosses_limit_month"] is not None else
                 f"month {s['crosses_limit_month_beyond_horizon']} (beyond)"
                 if s["crosses_limit_month_beyond_horizon"] else "-" if s["limit_bytes"] else "no limit")
        per_user = _size(s["per_user_bytes"]) if s["per_user_bytes"] is not None else "n/a (no users)"
        table.add_row(s["store"], _size(s["bytes"]), f"{s['rows']:,} {s['kind']}", per_user, _size(s["limit_bytes"]),
                      cross, f"{s['cost_now']['total']:,.0f}", f"{s['cost_at_horizon']['total']:,.0f}")
    console.print(table)
    for s in result["stores"]:
        items = sorted(s["items"], key=lambda i: i["bytes"], reverse=True)[:top]
        if not items:
            continue
        t = Table(title=f"{s['store']}: largest {len(items)} of {len(s['items'])}", title_justify="left")
        for col in ("name", "size", "rows/docs", "per user"):
            t.add_column(col)
        for i in items:
            t.add_row(escape(i["name"]), _size(i["bytes"]), f"{i['rows']:,}" if i.get("rows") is not None else "-",
                      _size(i.get("per_user_bytes")))
        console.print(t)
    console.print(f"wrote {out / 'capacity.json'} and {out / 'capacity.png'} "
                  f"(prices: monitoring/prices.yml, {result['currency']}, {result['region']})")
