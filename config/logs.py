"""Structured JSON logs (structlog) with the request id of the MCP call being served.

`configure_json_logging()` makes every log line one JSON object on stderr, from structlog loggers and from
the standard library's alike (`logging.getLogger(...)` calls keep working). `request_context(request_id)`
binds the id for the duration of a call: every line logged meanwhile carries `request_id`, the stores read
it (`current_request_id()`) to tag their database sessions, and the audit row records it, so one id links
the call, its audit row and its slow-query log entries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache

import structlog

_REQUEST_ID: ContextVar[str | None] = ContextVar("kredete_request_id", default=None)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


@lru_cache(maxsize=1)
def tag_sessions() -> bool:
    """KREDETE_MONITOR_TAG_SESSIONS (default on): during a call, name each PostgreSQL session
    `kredete:<request id>` (one extra round trip per connection checked out) so the server's slow-statement log
    links to the call and its audit row."""
    return os.environ.get("KREDETE_MONITOR_TAG_SESSIONS", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    token = _REQUEST_ID.set(request_id)
    try:
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            yield
    finally:
        _REQUEST_ID.reset(token)


def configure_json_logging(service: str, level: str | None = None) -> None:
    """JSON lines on stderr (stdout may belong to a protocol, e.g. MCP over stdio)."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        lambda _logger, _name, event: {**event, "service": service},
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=str)]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("KREDETE_LOG_LEVEL", "WARNING"))
