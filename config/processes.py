"""Facts about local processes that every layer may ask: the stack's supervisor and the HTTP workers alike."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pid_exists(pid: int) -> bool:
    """Whether `kill(pid, 0)` finds `pid` (of any user), a zombie included: what PostgreSQL's lock check asks."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the program name (state first, then the parent's pid); None when
    the process is gone or the file unreadable. The name is cut at its last `)`: it may hold spaces and `)`."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return None


def pid_alive(pid: int | None) -> bool:
    """True when `pid` names a running process (of any user); a zombie, exited but not yet reaped, is not."""
    if not pid or not pid_exists(pid):
        return False
    # A zombie still answers kill(0); treat it as dead.
    fields = stat_fields(pid)
    return not (fields and fields[0] == "Z")
