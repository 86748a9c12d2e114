"""`kredete redact`: text on stdin, one JSON object ``{"text": ..., "findings": [...]}`` on stdout."""

from __future__ import annotations

import json
from typing import TextIO

from .engine import redact
from .masking import role_policy


def redact_stream(stdin: TextIO, stdout: TextIO, role: str | None = None) -> None:
    """Redact all of `stdin` (mask everything unless a `role` policy is named) and write the JSON result."""
    result = redact(stdin.read(), role_policy(role) if role else None)
    payload = {"text": result.text, "findings": [f.model_dump(mode="json") for f in result.findings]}
    stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    stdout.flush()
