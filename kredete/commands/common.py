"""Helpers shared by the CLI command modules."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error (no traceback) and exit. The message is printed as text: a server's log line in
    it (e.g. OpenSearch's `[/ (/dev/vda)]`) would otherwise be read as markup and end in a MarkupError."""
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)
