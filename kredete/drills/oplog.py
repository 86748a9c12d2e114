"""Operator actions (backups, restores, drills): audited in `audit_logs` and run with a progress bar.

pgBackRest logs every file it copies at `detail` level with the share of the whole done so far
("backup file ... (8KB, 45.23%)"); the progress bar follows that log, so it is the tool's own count.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from config.errors import StackError

_PERCENT = re.compile(rb"\((?:[\d.]+[KMG]?B(?:->[\d.]+[KMG]?B)?), ([\d.]+)%\)")


def actor() -> str:
    return f"operator:{os.environ.get('SUDO_USER') or getpass.getuser()}"


async def _append(action: str, resource: str, decision: str, reason: str | None, metadata: dict[str, Any]) -> None:
    from config.settings import resolve
    from stores.postgres import PostgresStore
    from stores.postgres.audit import AuditRepository
    from stores.postgres.models import AuditEntry

    s = resolve()
    store = PostgresStore(s.postgres_url.get_secret_value(), timeout=s.connect_timeout_s)  # the primary only
    try:
        await store.connect()
        await AuditRepository(store).append(AuditEntry(
            actor_subject=actor(), actor_role="operator", action=action, resource=resource, decision=decision,
            reason=reason, metadata=metadata))
    finally:
        await store.close()


def audit(action: str, resource: str, *, decision: str = "allowed", reason: str | None = None,
          console: Console | None = None, **metadata: Any) -> bool:
    """One hash-chained audit row for an operator action; False (and a warning) when the database is down."""
    try:
        asyncio.run(_append(action, resource, decision, reason, metadata))
        return True
    except Exception as exc:
        (console or Console(stderr=True)).print(
            f"[yellow]warning:[/] audit row for {action} not written: {type(exc).__name__}: {str(exc)[:200]}")
        return False


def newest_log(directory: Path, pattern: str) -> Path | None:
    files = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


def run_with_progress(argv: list[str], *, description: str, log: Path | None, console: Console,
                      cwd: Path | None = None, size_probe=None,
                      total: float | None = None) -> subprocess.CompletedProcess:
    """Run a long command with a progress bar; Ctrl-C stops it cleanly (SIGTERM) and raises KeyboardInterrupt.

    Progress comes from pgBackRest's detail log (`log`, read from its end as it grows), or from
    `size_probe()` against `total` (bytes written so far, e.g. a restore's data dir).
    """
    start = log.stat().st_size if log and log.exists() else 0
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)
    done = 0.0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=100)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if log and log.exists():
                    with log.open("rb") as fh:
                        fh.seek(start)
                        found = _PERCENT.findall(fh.read())
                    if found:
                        done = max(done, float(found[-1]))
                elif size_probe and total:
                    done = max(done, min(99.0, 100.0 * size_probe() / total))
                bar.update(task, completed=done)
            if proc.returncode == 0:
                bar.update(task, completed=100)
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            raise
    out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def require(condition: bool, message: str) -> None:
    if not condition:
        raise StackError(message)
