"""One guarded call: what it accumulates for its audit row, and the context variable that carries it."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from guards.principal import Principal


@dataclass
class CallState:
    """What one tool call accumulates for its audit row."""

    request_id: str
    tool: str
    arguments: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    decision: str = "allowed"
    reason: str | None = None
    rows_returned: int = 0
    redactions: dict[str, int] = field(default_factory=dict)
    injection_flags: int = 0
    truncated: bool = False
    unmasked: bool = False
    resource: str | None = None
    #: The tool name a caller asked for when it is not one of ours (`tool` is then "unknown"). Never stored:
    #: the audit row carries a keyed digest of it (it is caller-controlled text, possibly PII or injection).
    requested_name: str | None = None
    #: More audit metadata (fixed keys and values set by the guards, never caller text).
    extra: dict[str, Any] = field(default_factory=dict)
    #: The tool's input model as the middleware validated it (the tool reuses it rather than parsing again).
    parsed_arguments: Any = None


current_call: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("kredete_call", default=None)


def new_call_state(tool: str, arguments: dict[str, Any]) -> CallState:
    return CallState(request_id=uuid.uuid4().hex, tool=tool, arguments=arguments)


def args_digest(arguments: dict[str, Any], key: bytes) -> str:
    """Keyed digest of the arguments: proves what was asked without storing it (values may be PII)."""
    canonical = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
