"""A test run that starts from a stopped stack leaves no server process behind.

The shared stack keeps running: the inner pytest run gets its own `.local/` (KREDETE_LOCAL_DIR) and its own
ports (KREDETE_PORT_*), so every server it starts is a fresh, isolated one. It runs the fixtures that start
servers (pg_stack: primary + replica; mongo_url: FerretDB + its primary); afterwards no process of that
`.local/` may be left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.paths import REPO_ROOT
from config.ports import free_port
from kredete.stack.base import port_open

PORT_NAMES = ("POSTGRES", "POSTGRES_REPLICA", "POSTGRES_REPLICA2", "MONGO", "MONGO_DEBUG", "REDIS", "OPENSEARCH",
              "OPENSEARCH_TRANSPORT", "S3", "S3_CONSOLE", "S3_DR", "S3_DR_CONSOLE")


def _distinct_free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    for name in PORT_NAMES:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


PORTS = _distinct_free_ports()


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def _processes_of(local: Path) -> list[int]:
    """Pids whose command line or working directory is inside `local` (our servers, whatever they are)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        argv = _cmdline(int(proc.name))
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            cwd = ""
        if any(str(local) in a for a in argv) or cwd.startswith(str(local)):
            found.append(int(proc.name))
    return found


@pytest.fixture
def scratch_local():
    # Under the repo, not /tmp: the servers' unprivileged user must be able to reach it.
    local = REPO_ROOT / ".local" / "scratch" / f"orphans-{uuid.uuid4().hex[:8]}"
    local.mkdir(parents=True)
    yield local
    for pid in _processes_of(local):  # only when the test failed: this test never leaves them itself
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(local, ignore_errors=True)


def test_a_run_from_a_stopped_stack_leaves_no_servers_running(scratch_local):
    assert not any(port_open(p) for p in PORTS.values()), "the scratch ports must be free"
    env = {k: v for k, v in os.environ.items() if not (k.startswith("KREDETE_") and k.endswith("_URL"))}
    env.pop("KREDETE_KEEP_STACK", None)
    env.update({f"KREDETE_PORT_{k}": str(v) for k, v in PORTS.items()})
    env["KREDETE_LOCAL_DIR"] = str(scratch_local)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x",
         "tests/integration/postgres/test_fixture_servers.py", "tests/integration/mongo/test_fixture_servers.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    # the inner run really started servers of its own...
    assert (scratch_local / "postgres" / "pgdata" / "PG_VERSION").exists()
    assert (scratch_local / "mongo" / "server.log").exists()
    # ...and stopped every one of them
    left = _processes_of(scratch_local)
    assert not left, f"server processes left behind: {[(p, (_cmdline(p) or ['?'])[0]) for p in left]}"
    assert not [p for p in PORTS.values() if port_open(p)]
    assert not list(scratch_local.glob("*/server.pid"))
