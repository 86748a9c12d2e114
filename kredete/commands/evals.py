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
) -> None:
    """Run the evals against a dedicated dataset (kredete_evals DBs, kredete-evals index prefix) and the
    MCP server as a real HTTP process; writes report.md, report.json and PNG plots."""
    from kredete.commands.common import err, fail

    _importable()
    from evals.runner import run

    if resume is not None and not resume.is_dir():
        fail(f"no report folder {resume}")
    run([s.value for s in only] if only else None, resume=resume, users=users, latency_calls=latency_calls,
        fresh=fresh, console=err)
