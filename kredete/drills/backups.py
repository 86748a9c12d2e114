"""Backups with pgBackRest: run one (full, differential or incremental), list them, verify the repository.

What is backed up is the whole PostgreSQL cluster: the payments database and FerretDB's `ferretdb` database
(the credit store) together, so one restore brings both back to the same instant.

Schedule (the MCP server never runs backups; a scheduler does), e.g. cron on the database host:

    15 1 * * 0    kredete backup run --type full     # weekly full, Sunday 01:15
    15 1 * * 1-6  kredete backup run --type diff     # daily differential
    15 * * * *    kredete backup run --type incr     # hourly incremental (skipped while another runs: lock)

Each run ends with pgBackRest's `expire` (35-day time-based retention), and between runs the primary's WAL
archiving (archive_timeout) keeps the point-in-time window continuous.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from rich.console import Console

from config.errors import StackError
from kredete.drills import oplog
from kredete.stack import pgbackrest

BackupType = Literal["full", "diff", "incr"]


def status_file():
    """Last backup and archive status, for monitoring (a textfile exporter or the ops command reads it)."""
    return pgbackrest.home() / "status.json"


def _ts(epoch: int | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else None


def ensure_ready() -> None:
    """Repository configured and stanza created (idempotent; cheap when already done)."""
    from kredete import stack

    if stack.profile() == "ha":
        from kredete.stack import patroni

        patroni.ensure_backups([s for s in stack.local_servers() if s.name.startswith("ha-pg")])
        return
    from kredete.stack.postgres import PostgresPrimary

    primary = PostgresPrimary()
    if not pgbackrest.is_ready(primary.system_identifier()):
        pgbackrest.setup_repository(primary)


def _primary_sql(sql: str) -> str:
    """SQL on the cluster's primary: the local primary, or the Patroni leader in the HA profile."""
    from kredete import stack

    if stack.profile() == "ha":
        from kredete.stack import patroni

        return patroni.psql(sql)
    from kredete.stack.postgres import PostgresPrimary

    return PostgresPrimary()._psql(sql)


def run_backup(kind: BackupType, console: Console) -> dict[str, Any]:
    """One backup with progress, audited; Ctrl-C stops it (the next run of the same type resumes it)."""
    ensure_ready()
    before = {b["label"] for b in backups()}
    log = pgbackrest.log_dir() / f"{pgbackrest.STANZA}-backup.log"
    argv = [pgbackrest.BIN, f"--config={pgbackrest.conf_file()}", f"--stanza={pgbackrest.STANZA}",
            "--log-level-file=detail", "backup", f"--type={kind}"]
    user = pgbackrest._run_user()
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]
    t0 = time.monotonic()
    resource = f"pgbackrest:{pgbackrest.STANZA}"
    try:
        proc = oplog.run_with_progress(argv, description=f"backup ({kind})", log=log, console=console,
                                       cwd=pgbackrest.home())
    except KeyboardInterrupt:
        oplog.audit("backup.run", resource, decision="error", reason="interrupted by the operator",
                    console=console, type=kind)
        raise
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        message = pgbackrest.explain(proc, "backup")
        oplog.audit("backup.run", resource, decision="error", reason=message[:500], console=console, type=kind)
        write_status()
        raise StackError(message)
    new = [b for b in backups() if b["label"] not in before]
    made = new[-1] if new else backups()[-1]
    result = {"label": made["label"], "type": made["type"], "seconds": round(elapsed, 1),
              "size_bytes": made["info"]["size"], "repo_bytes": made["info"]["repository"]["delta"],
              "start": _ts(made["timestamp"]["start"]), "stop": _ts(made["timestamp"]["stop"])}
    oplog.audit("backup.run", resource, console=console, **result)
    write_status()
    return result


def backups(cluster: str | None = None) -> list[dict[str, Any]]:
    return pgbackrest.info(cluster).get("backup", [])


def archiver() -> dict[str, Any]:
    """pg_stat_archiver of the primary: what was pushed last and what failed last."""
    row = _primary_sql(
        "SELECT json_build_object('archived_count', archived_count, 'last_archived_wal', last_archived_wal, "
        "'last_archived_time', last_archived_time, 'failed_count', failed_count, 'last_failed_wal', "
        "last_failed_wal, 'last_failed_time', last_failed_time) FROM pg_stat_archiver")
    data = json.loads(row)
    failed, ok = data.get("last_failed_time"), data.get("last_archived_time")
    data["failing"] = bool(failed and (not ok or failed > ok))
    return data


def write_status() -> dict[str, Any]:
    """Write status.json: newest backup and the archiver's state (failing when the last push failed)."""
    status: dict[str, Any] = {"written_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        items = backups()
        last = items[-1] if items else None
        status["last_backup"] = ({"label": last["label"], "type": last["type"],
                                  "stop": _ts(last["timestamp"]["stop"])} if last else None)
        status["repository_ok"] = True
    except StackError as exc:
        status["repository_ok"], status["repository_error"] = False, str(exc)[:500]
    try:
        status["archive"] = archiver()
    except StackError as exc:
        status["archive"] = {"error": str(exc)[:300]}
    path = status_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(status, indent=2, default=str))
    return status


def verify() -> list[str]:
    """`pgbackrest verify` (every backup and WAL file readable, checksums match) and `check` (a WAL switch
    archived end to end). Returns the problems found (empty: all good)."""
    problems: list[str] = []
    proc = pgbackrest.pgbackrest("verify", "--output=text", "--verbose", timeout=3600, check=False)
    if proc.returncode != 0:
        problems.append(pgbackrest.explain(proc, "verify"))
    context = ""
    for line in proc.stdout.splitlines():
        text = line.strip()
        if text.startswith(("archiveId:", "backup:")):
            context = text.split(",")[0]
        if text.startswith("status:") and text != "status: ok":
            problems.append(f"repository {text}")
        if text.startswith("missing:") and any(not part.strip().endswith(": 0") for part in text.split(",")):
            problems.append(f"{context}: {text}")
    problems += wal_gaps()
    proc = pgbackrest.pgbackrest("check", timeout=300, check=False)
    if proc.returncode != 0:
        problems.append(pgbackrest.explain(proc, "check"))
    return list(dict.fromkeys(problems))


def wal_gaps() -> list[str]:
    """Holes in the WAL archive: `pgbackrest verify` checks the files that are there, not the ones that are
    not. Within one timeline, archived segments are consecutive; a hole stops every restore that needs to
    replay through it."""
    proc = pgbackrest.pgbackrest("repo-ls", "--recurse", "--output=json", f"archive/{pgbackrest.STANZA}",
                                 timeout=300)
    segments: dict[tuple[str, int], list[int]] = {}
    for path, meta in json.loads(proc.stdout or "{}").items():
        name = path.rsplit("/", 1)[-1]
        seg = name.split("-", 1)[0]
        if meta.get("type") != "file" or len(seg) != 24 or "." in seg or name.count("-") != 1:
            continue
        try:
            tli, number = int(seg[:8], 16), int(seg[8:16], 16) * 0x100 + int(seg[16:24], 16)
        except ValueError:
            continue
        segments.setdefault((path.split("/", 1)[0], tli), []).append(number)
    gaps = []
    for (archive_id, tli), numbers in sorted(segments.items()):
        numbers.sort()
        for a, b in itertools.pairwise(numbers):
            if b > a + 1:
                first, last = a + 1, b - 1
                gaps.append(f"WAL archive {archive_id} timeline {tli}: segment(s) "
                            f"{tli:08X}{first >> 8:08X}{first & 0xFF:08X}"
                            + (f"..{tli:08X}{last >> 8:08X}{last & 0xFF:08X}" if last > first else "")
                            + " missing")
    return gaps
