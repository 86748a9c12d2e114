"""Processes a fault scenario may kill: a private FerretDB (on the shared PostgreSQL backend, so it serves the
same data), a private Redis, and the MCP server itself. Never the shared stack's servers: their users would
see the outage too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from config.paths import REPO_ROOT
from config.ports import free_port
from kredete.stack.base import StackError
from kredete.stack.ferretdb import FerretDBServer

KREDETE = str(Path(sys.executable).with_name("kredete"))


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3):
        return True
    return False


def _kill9_group(pid: int) -> float:
    """kill -9 a process group and reap its leader; the wall-clock time the signal was sent."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    sent = time.time()
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)
    return sent


class PrivateFerretDB(FerretDBServer):
    """A FerretDB of its own (port, debug port, data dir) on the shared PostgreSQL backend, or on the backend
    `backend_url` names (a `kredete.faults.copies.PrivatePostgres` holding the dataset's credit-store schema)."""

    def __init__(self, data_dir: Path, backend_url: str | None = None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.debug_port = free_port()
        self.backend_url = backend_url
        self.grants_reader = backend_url is None
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _backend_url(self) -> str:
        return self.backend_url or super()._backend_url()

    def prepare(self) -> None:
        if self.backend_url is None:
            super().prepare()  # the shared backend's role and database (idempotent)
        else:  # a private backend carries its copy already
            (self.data_dir / "state").mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv, env = super().command()
        return [a if not a.startswith("--debug-addr=") else f"--debug-addr=127.0.0.1:{self.debug_port}"
                for a in argv], env

    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def kill9(self) -> float:
        """kill -9 the server's process group; when the signal was sent."""
        pid = self.pid()
        if not pid:
            raise StackError("the private FerretDB is not running")
        sent = _kill9_group(pid)
        self.pid_file.unlink(missing_ok=True)
        return sent


class PrivateRedis:
    """A standalone redis-server of its own, without persistence or ACL users (a scratch rate limiter)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = (self.data_dir / "redis.log").open("ab")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.data_dir)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"private redis did not start on {self.port}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill9(self) -> float:
        """kill -9 the server; when the signal was sent."""
        sent = time.time()
        if self.proc is not None:
            sent = _kill9_group(self.proc.pid)
            self.proc = None
        return sent

    stop = kill9


class McpServer:
    """`kredete serve --transport http` as its own process group, on a free port; `kill9()` for real."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = Path(log_path)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def healthz_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait until it listens; returns the seconds that took."""
        t0 = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([KREDETE, "serve", "--transport", "http", "--port", str(self.port)],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=REPO_ROOT)
        deadline = t0 + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise StackError(f"MCP server exited ({self.proc.returncode}): "
                                 f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise StackError(f"MCP server did not listen on {self.port} within {timeout:.0f}s")
            time.sleep(0.1)
        return time.monotonic() - t0

    def healthz(self) -> dict:
        """The /healthz document (also on a 503, which only says a store is down)."""
        import json

        try:
            with urllib.request.urlopen(self.healthz_url, timeout=10) as resp:  # noqa: S310 (local)
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def kill9(self) -> None:
        if self.proc is not None:
            _kill9_group(self.proc.pid)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _kill9_group(self.proc.pid)
        self.proc = None
