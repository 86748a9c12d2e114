"""PostgreSQL's slow-statement log (`log_min_duration_statement`), read back with each entry's request id.

The log line prefix names the time, the backend pid and the session's application (`%m [%p] app=%a`). An MCP
call's audit row records the sessions it used (`metadata.pg_sessions`: server, backend pid, checkout and
release time; `stores.postgres.pool.call_sessions`), so an entry is the call's when the same server's same pid
logged it within that window; a session named `kredete:<request id>` (how calls were tagged before, one
round trip each) still gives its id directly. So a slow entry leads to the call's audit row and its JSON log
lines. A statement is kept up to 2,000 characters; `DETAIL: parameters` lines (the bound values) are never read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

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
    #: the backend process that logged it
    pid: int = 0

    @property
    def database(self) -> str:
        return self.who.rpartition("@")[2]

    def epoch_ms(self) -> int | None:
        """The entry's time in epoch milliseconds (PostgreSQL prints it to the millisecond, truncated)."""
        stamp, _, zone = self.at.rpartition(" ")
        try:
            tz = UTC if zone in ("UTC", "GMT", "Z") else ZoneInfo(zone)
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f" if "." in stamp else "%Y-%m-%d %H:%M:%S")
        except (ValueError, KeyError, OSError):
            return None
        return int(when.replace(tzinfo=tz).timestamp() * 1000)


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
                        phase=m["phase"], statement=sql[:2000], pid=int(m["pid"]))


def slow_entries(path: Path, *, request_id: str | None = None, limit: int = 20, server: str = "") -> list[SlowEntry]:
    """The newest `limit` entries (of one request when given)."""
    found = [e for e in entries(path, server) if request_id is None or e.request_id == request_id]
    return found[-limit:]


def attribute(found: Iterable[SlowEntry], calls: Iterable[tuple[str, list[dict[str, Any]]]],
              ports: dict[str, int]) -> None:
    """Give each entry without a request id the call whose recorded session holds it (`calls`: request id and its
    `pg_sessions`; `ports`: each server's port by name): the same server and backend pid, the entry's time within
    the session's checkout..release window. Two windows hold it only when one session served two calls within
    one millisecond: the later call is named."""
    windows: dict[tuple[int, int], list[tuple[int, int, str]]] = collections.defaultdict(list)
    for rid, sessions in calls:
        for s in sessions or ():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                port = int(str(s["server"]).rpartition(":")[2])
                windows[(port, int(s["pid"]))].append((int(s["from"]), int(s["to"]), rid))
    for e in found:
        at, port = e.epoch_ms(), ports.get(e.server)
        if e.request_id is not None or at is None or port is None:
            continue
        held = [(lo, rid) for lo, hi, rid in windows.get((port, e.pid), ()) if lo <= at <= hi]
        if held:
            e.request_id = max(held)[1]


def _stack_servers() -> list[Any]:
    from kredete.stack import plan
    from kredete.stack.postgres import _PostgresBase

    return [s for s in plan()[0] if isinstance(s, _PostgresBase)]


async def _audited_sessions(admin_url: str, entries: list[SlowEntry], *, request_id: str | None = None,
                            slack: timedelta = timedelta(minutes=10)) -> list[tuple[str, list[dict[str, Any]]]]:
    """The calls audited around `entries` (from a second before the first to `slack` after the last: a call's row
    is written after its statements) in each of their databases, with the sessions they recorded; only those
    that used the entries' pids, or the one call `request_id`."""
    from stores.postgres import AuditRepository, PostgresStore

    times = [t for t in (e.epoch_ms() for e in entries) if t is not None]
    if not times:
        return []
    lo = datetime.fromtimestamp(min(times) / 1000 - 1, UTC)
    hi = datetime.fromtimestamp(max(times) / 1000, UTC) + slack
    pids = [] if request_id is not None else sorted({e.pid for e in entries})
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for db in sorted({e.database for e in entries if e.database}):
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{db}"))
        try:
            store = await PostgresStore(url, timeout=5.0, min_size=1, max_size=1).connect()
        except Exception:  # noqa: S112 - a database that is gone (a dropped scratch database): nothing to attribute
            continue
        try:
            out += await AuditRepository(store).call_sessions(lo, hi, pids=pids, request_id=request_id)
        except Exception:  # noqa: S110 - a database without the audit trail (postgres, a test's own)
            pass
        finally:
            await store.close()
    return out


def stack_slow_entries(*, request_id: str | None = None, limit: int = 20) -> list[SlowEntry]:
    """Entries of every PostgreSQL server of the local stack (reads run on the replicas), oldest first, each with
    its MCP call's request id when it ran in one (`attribute`, from the calls' audit rows)."""
    servers = _stack_servers()
    ports = {s.name: s.port for s in servers}
    found: list[SlowEntry] = []
    for server in servers:
        found += entries(server.log_file, server.name)
    found.sort(key=lambda e: e.at)
    primary = next((s for s in servers if s.name == "postgres"), servers[0] if servers else None)
    admin = primary.url() if primary is not None else None  # the audit trail, read on the primary
    if request_id is None:
        newest = found[-limit:]
        if admin is not None:
            attribute(newest, asyncio.run(_audited_sessions(admin, [e for e in newest if e.request_id is None])),
                      ports)
        return newest
    named = [e for e in found if e.request_id == request_id]
    if admin is not None:
        # The call's own sessions bound where its entries can be; among those, each entry's call is decided
        # against every call that used the same sessions (one that released a session the same millisecond).
        open_ = [e for e in found if e.request_id is None]
        own = asyncio.run(_audited_sessions(admin, open_, request_id=request_id))
        inside: list[SlowEntry] = [e.model_copy() for e in open_]
        attribute(inside, own, ports)
        inside = [e.model_copy(update={"request_id": None}) for e in inside if e.request_id == request_id]
        attribute(inside, asyncio.run(_audited_sessions(admin, inside)), ports)
        named += [e for e in inside if e.request_id == request_id]
    return sorted(named, key=lambda e: e.at)[-limit:]
