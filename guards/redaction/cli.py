"""Command-line entry point (wired up as ``kredete redact``)."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .engine import redact
from .policy import role_policy


def redact_stream(stdin: TextIO, stdout: TextIO, role: str | None = None) -> None:
    """Redact all of `stdin` and write one JSON object ``{"text": ..., "findings": [...]}`` to `stdout`."""
    result = redact(stdin.read(), role_policy(role) if role else None)
    payload = {"text": result.text, "findings": [f.model_dump(mode="json") for f in result.findings]}
    stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    stdout.flush()


def main_redact_stdin(role: str | None = None) -> None:
    """Read text on stdin, print the redaction as JSON (mask everything unless a `role` policy is named).

    Only simple parameters, so it can be registered directly as a typer command.
    """
    redact_stream(sys.stdin, sys.stdout, role)
