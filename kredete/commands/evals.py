"""`kredete evals run`: retrieval quality, redaction quality, permission matrix, latency; a report with plots."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

evals_app = typer.Typer(no_args_is_help=True, help="Evaluation harness (report in evals/reports/<timestamp>/).")


class Section(StrEnum):
    retrieval = "retrieval"
    redaction = "redaction"
    permissions = "permissions"
    latency = "latency"


def register(app: typer.Typer) -> None:
    app.add_typer(evals_app, name="evals")


def _importable() -> None:
    """`evals` is a top-level package of the repo; an editable install made before it existed does not map it."""
    import importlib.util
    import sys

    if importlib.util.find_spec("evals") is None:
        from config.paths import REPO_ROOT

        sys.path.insert(0, str(REPO_ROOT))


@evals_app.command("run")
def evals_run(
    only: Annotated[list[Section] | None, typer.Option("--only", help="Run only these sections (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="A report folder of an interrupted run: finished "
                                                                 "sections are kept, the rest run.")] = None,
    users: Annotated[int, typer.Option(help="Seeded users in the evals dataset.")] = 60,
    latency_calls: Annotated[int, typer.Option("--latency-calls", help="Sequential calls per tool.")] = 40,
    fresh: Annotated[bool, typer.Option("--fresh", help="Rebuild the evals dataset even if it exists.")] = False,
    queries: Annotated[int | None, typer.Option("--queries", min=1, help="Retrieval: an evenly spread sample of "
                                                "this many labelled queries (default: all).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default evals/reports/<timestamp>/, "
                                                           "committed for full runs).")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name (kredete_<name> databases, kredete-<name> "
                                                           "indexes).")] = "evals",
) -> None:
    """Run the evals against a dedicated dataset (kredete_evals DBs, kredete-evals index prefix) and the
    MCP server as a real HTTP process; writes report.md, report.json and PNG plots."""
    import re

    from kredete.commands.common import err, fail

    _importable()
    from evals.runner import run

    if not re.fullmatch(r"[a-z][a-z0-9]{0,30}", dataset):
        fail("--dataset: lower-case letters and digits, starting with a letter")
    if resume is not None and not resume.is_dir():
        fail(f"no report folder {resume}")
    run([s.value for s in only] if only else None, resume=resume, users=users, latency_calls=latency_calls,
        fresh=fresh, console=err, queries=queries, out=out, dataset_name=dataset)


@evals_app.command("compare")
def evals_compare(
    a: Annotated[Path, typer.Argument(help="The earlier report (folder or report.json).")],
    b: Annotated[Path, typer.Argument(help="The later report (folder or report.json).")],
    changed: Annotated[bool, typer.Option("--changed", help="Only metrics that changed.")] = False,
) -> None:
    """The deltas between two evals reports (B minus A), section by section, with which way each went."""
    from rich.console import Console
    from rich.table import Table

    from kredete.commands.common import fail

    _importable()
    from evals.compare import compare, load, verdict

    try:
        ra, rb = load(a), load(b)
    except (OSError, ValueError) as exc:
        fail(f"cannot read a report: {exc}")
    t = Table(title=f"evals compare: {ra.get('started', a)} -> {rb.get('started', b)}")
    for col in ("section", "metric", "A", "B", "delta", ""):
        t.add_column(col, justify="right" if col in ("A", "B", "delta") else "left")
    style = {"better": "green", "worse": "red", "same": "dim", "missing": "yellow"}
    for row in compare(ra, rb):
        v = verdict(row)
        if changed and v == "same":
            continue
        section, metric, va, vb, _ = row
        delta = f"{vb - va:+.4g}" if va is not None and vb is not None else "-"
        t.add_row(section, metric, "-" if va is None else f"{va:.4g}", "-" if vb is None else f"{vb:.4g}", delta,
                  f"[{style[v]}]{v}[/]")
    Console(width=max(100, Console().width)).print(t)
