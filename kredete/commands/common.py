"""Helpers shared by the CLI command modules."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error (no traceback) and exit."""
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)
