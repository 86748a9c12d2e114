"""PostgreSQL's slow-statement log (`log_min_duration_statement`), read back with each entry's request id.

During an MCP call the session's `application_name` is `kredete:<request id>` (stores/postgres/pool.py) and the
log line prefix names it (`app=%a`), so a slow entry leads to the call's audit row and its JSON log lines. A
statement is kept up to 2,000 characters; `DETAIL: parameters` lines (the bound values) are never read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

LINE = re.compile(r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+) \[(?P<pid>\d+)\] app=(?P<app>\S*) "
                  r"(?P<who>\S*) LOG:  duration: (?P<ms>[\d.]+) ms  (?P<phase>statement|execute|parse|bind)[^:]*: "
                  r"(?P<sql>.*)$")


class SlowEntry(BaseModel):
    server: str = ""
    at: str
    duration_ms: float
    application: str
    request_id: str | None
    who: str
    #: statement (simple protocol), or the extended protocol's parse / bind / execute step
    phase: str = "statement"
    statement: str


def entries(path: Path, server: str = "") -> Iterator[SlowEntry]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    for i, line in enumerate(lines):
        m = LINE.match(line)
        if not m:
            continue
        parts = [m["sql"].strip()]
        for follow in lines[i + 1:i + 40]:  # a statement over several lines: its continuation lines
            if follow[:1] not in ("\t", " ") or sum(map(len, parts)) > 2000:
                break
            parts.append(follow.strip())
        sql = " ".join(p for p in parts if p)
        app = m["app"]
        yield SlowEntry(server=server, at=m["at"], duration_ms=float(m["ms"]), application=app, who=m["who"],
                        request_id=app.removeprefix("kredete:") if app.startswith("kredete:") else None,
                        phase=m["phase"], statement=sql[:2000])


def slow_entries(path: Path, *, request_id: str | None = None, limit: int = 20, server: str = "") -> list[SlowEntry]:
    """The newest `limit` entries (of one request when given)."""
    found = [e for e in entries(path, server) if request_id is None or e.request_id == request_id]
    return found[-limit:]


def stack_slow_entries(*, request_id: str | None = None, limit: int = 20) -> list[SlowEntry]:
    """Entries of every PostgreSQL server of the local stack (reads run on the replicas), oldest first."""
    from kredete.stack import plan
    from kredete.stack.postgres import _PostgresBase

    found: list[SlowEntry] = []
    for server in plan()[0]:
        if isinstance(server, _PostgresBase):
            found += slow_entries(server.log_file, request_id=request_id, limit=limit, server=server.name)
    return sorted(found, key=lambda e: e.at)[-limit:]
