"""The shape every local server follows: provision, start, health-check, stop, report status.

Each server runs detached in its own process group, keeps its data under `.local/<name>/`,
its log in `.local/<name>/server.log` and its pid in `.local/<name>/server.pid`. Binaries
and downloads live in the cache dir so a fresh clone provisions in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from config.errors import StackError
from config.paths import cache_dir, local_dir
from config.processes import pid_alive, stat_fields

logger = logging.getLogger("kredete.stack")


class ServerStatus(BaseModel):
    name: str
    version: str
    port: int
    pid: int | None
    healthy: bool
    data_dir: str
    kind: str  # "real" or "fallback: <why>"
    url: str
    note: str = ""


T = TypeVar("T")


def side_by_side(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run each call in a thread of its own and wait for every one; their results in order, or the first
    failure raised once all have finished (none is abandoned half-way: a server mid-start or mid-stop)."""
    with ThreadPoolExecutor(max(1, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port.

    Our ports lie in Linux's ephemeral range: a dial to a local port nobody listens on can be given that very
    port as its source and connect to itself (TCP self-connect). That is nobody listening, not a server.
    """
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout) as sock:
        return sock.getsockname()[1] != port
    return False


def listening(port: int) -> bool:
    """True when a socket listens on `port` (read from /proc: no connection is made)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def _never_shows_argv(pid: int) -> bool:
    """Gone, a zombie, or a kernel thread (kthreadd, pid 2, or one of its children): no command line will come."""
    fields = stat_fields(pid)
    return not fields or fields[0] == "Z" or pid == 2 or fields[1] == "2"


def proc_cmdline(pid: int, settle: float = 1.0) -> list[str] | None:
    """argv of a process from /proc (None when it is gone or unreadable).

    A process in the middle of exec() reads as an empty command line: its parent's Popen returns once the
    close-on-exec pipe closes, before the kernel has set up the new program's arguments (on a loaded machine
    most reads in that window come back empty). A live process that is neither a zombie nor a kernel thread
    is given up to `settle` seconds to show its command line, so it is not mistaken for none at all.
    """
    path = Path(f"/proc/{pid}/cmdline")
    deadline = time.monotonic() + settle
    while True:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if raw or time.monotonic() >= deadline or _never_shows_argv(pid):
            return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        time.sleep(0.005)


def describe_pid(pid: int) -> str:
    """The program a pid runs, by name only (a command line can carry passwords)."""
    argv = proc_cmdline(pid)
    if argv is None or (not argv and not pid_alive(pid)):
        return "not running"
    if not argv:
        return "a process with no command line (a kernel thread)"
    return f"`{Path(argv[0].split()[0]).name}`"


def pids_listening(port: int) -> list[int]:
    """Pids of processes with a listening socket on the port (reads /proc, no extra tools)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    found: list[int] = []
    if not inodes:
        return found
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found.append(int(proc.name))
                    break
    return found


def run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 1800, user: str | None = None) -> str:
    """Run a provisioning command; raise StackError with its output tail when it fails."""
    argv = [str(c) for c in cmd]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise StackError(f"working directory {cwd} does not exist (running {argv[0]})") from exc
        raise StackError(f"command not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from exc
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-2000:]
        raise StackError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    return proc.stdout


_APT_LOCK = threading.Lock()
_apt_updated = False


def apt_install(*packages: str, recommends: bool = True) -> None:
    """Install Debian packages: one `apt-get update` per process and one install at a time (servers start in
    parallel), waiting for a dpkg lock that another checkout's install holds instead of failing."""
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _APT_LOCK:
        if not _apt_updated:
            run(["apt-get", "update", "-qq"], timeout=600, env=env)
            _apt_updated = True
        run(["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600",
             *(() if recommends else ("--no-install-recommends",)), *packages], timeout=1200, env=env)


class Server(ABC):
    """One server of the local stack."""

    name: str
    port: int
    #: "real" or "fallback: <reason>"; a provisioner sets it when it had to fall back.
    kind: str = "real"
    start_timeout: float = 60.0

    def __init__(self) -> None:
        self.data_dir = local_dir() / self.name
        #: What this instance found and did that the status table should say (stale pid file, restart).
        self.notes: list[str] = []
        #: Why the last health check failed, when the check knows (shown in the status note).
        self.problem = ""
        self.cache = cache_dir()
        # Builds and downloads go here; a fresh machine has no cache dir yet.
        self.cache.mkdir(parents=True, exist_ok=True)

    # --- to implement -------------------------------------------------------------------------
    @abstractmethod
    def provision(self) -> None:
        """Install or build what is missing (idempotent; cached outside the repo)."""

    @abstractmethod
    def command(self) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment that run the server in the foreground."""

    @abstractmethod
    def version(self) -> str:
        """Exact version of the provisioned server."""

    @abstractmethod
    def url(self) -> str:
        """Connection URL the adapters use."""

    def healthy(self) -> bool:
        """A real round trip where possible; the default only checks the port."""
        return port_open(self.port)

    def prepare(self) -> None:
        """Create or repair the data dir before start (initdb, config files...)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def run_as(self) -> str | None:
        """User to run the server as (PostgreSQL refuses root)."""
        return None

    def after_start(self) -> None:
        """One-time setup once healthy (users, buckets...)."""

    # --- shared behaviour ---------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.data_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def binary_name(self) -> str:
        """File name of the executable the server runs as (what /proc/<pid>/cmdline must show)."""
        return Path(self.command()[0][0]).name

    def owns(self, pid: int) -> bool:
        """True when `pid` is this server: the expected executable, running for this data dir.

        A pid file can outlive its process (crash, reboot) and the pid be reused by anything; only a
        process that runs our binary and whose command line or working directory is in our data dir is
        trusted or signalled. Servers that rewrite their process title (Redis) still keep the binary's
        name first and their working directory in the data dir.
        """
        argv = proc_cmdline(pid)
        if not argv:
            return False
        try:
            binary = self.binary_name()
        except Exception:
            return False
        words = [w for a in argv for w in a.split()]
        # The binary itself, or setpriv (run_as) in the instant before it execs the binary.
        if Path(words[0]).name not in (binary, "setpriv") or not any(Path(w).name == binary for w in words):
            return False
        data_dir = str(self.data_dir)
        if any(data_dir == w or data_dir + "/" in w for w in argv):
            return True
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd")
            return cwd == data_dir or cwd.startswith(data_dir + "/")
        return False

    def pid(self) -> int | None:
        """The server's pid when its pid file names a live process of ours; a stale file is removed."""
        try:
            text = self.pid_file.read_text().strip()
        except OSError:
            return None
        try:
            pid = int(text)
        except ValueError:
            self._stale(f"pid file {self.pid_file} held {text[:20]!r}")
            return None
        if not pid_alive(pid):
            self._stale(f"pid {pid} of {self.pid_file} is not running")
            return None
        if not self.owns(pid):
            self._stale(f"pid {pid} of {self.pid_file} is {describe_pid(pid)}, not this server "
                        "(pid reused after a reboot or crash); it was not signalled")
            return None
        return pid

    def _stale(self, why: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        message = f"removed a stale pid file: {why}"
        self.notes.append(message)
        logger.warning("%s: %s", self.name, message)

    def status(self) -> ServerStatus:
        notes: list[str] = []
        pid = self.pid()
        try:
            version = self.version()
        except Exception:  # status must never raise: it reports
            version = "not provisioned"
        try:
            healthy = bool(pid) and self.healthy()
        except Exception as exc:
            healthy = False
            notes.append(_first_sentence(exc))
        if pid and not healthy and self.problem:
            notes.append(self.problem)
        if not pid and port_open(self.port):
            notes.append(f"port {self.port} is taken by another process (pids {pids_listening(self.port)})")
        try:
            url = self.url()
        except Exception as exc:
            url = ""
            if _first_sentence(exc) not in notes:
                notes.append(_first_sentence(exc))
        return ServerStatus(name=self.name, version=version, port=self.port, pid=pid, healthy=healthy,
                            data_dir=str(self.data_dir), kind=self.kind, url=url,
                            note="; ".join(self.notes + notes))

    def broken(self) -> str | None:
        """Why the running server can never become healthy as it is (then start() restarts it at once)."""
        return None

    def start(self) -> None:
        """Start detached unless already running and healthy; wait until healthy."""
        pid = self.pid()
        if pid and self.healthy():
            return
        if pid:
            # Running but unhealthy: give it the rest of the start timeout before restarting, unless
            # waiting cannot help (e.g. a replica of another primary: prepare() rebuilds it).
            why = self.broken()
            if why:
                logger.warning("%s: %s; restarting it", self.name, why)
                self.notes.append(f"restarted: {why}")
            elif self._wait_healthy(pid, self.start_timeout):
                return
            self.stop()
        if port_open(self.port):
            owners = pids_listening(self.port)
            raise StackError(
                f"{self.name}: port {self.port} is in use by pids {owners or 'unknown'}, not by this stack. "
                f"Stop that process or set another port (see README, Configuration)."
            )
        self.prepare()
        argv, extra_env = self.command()
        env = {**os.environ, **extra_env}
        user = self.run_as()
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=self.data_dir, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        if not self._wait_healthy(proc.pid, self.start_timeout):
            tail = self.log_file.read_text(errors="replace")[-1500:]
            self.stop()
            raise StackError(f"{self.name} did not become healthy in {self.start_timeout:.0f}s. "
                             f"Log {self.log_file}:\n{tail}")
        self.after_start()

    def _wait_healthy(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return False
            if self.healthy():
                return True
            time.sleep(0.25)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left (only a pid verified to be ours)."""
        pid = self.pid()
        if pid:
            # Servers start in their own session, so they lead their process group; signalling the group
            # also reaches their workers. A pid that is not a group leader is signalled alone.
            group = False
            with contextlib.suppress(OSError):
                group = os.getpgid(pid) == pid
            send = os.killpg if group else os.kill
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            # Workers left behind by a dead leader still carry its group id (never reused while in use).
            if group or pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    send(pid, signal.SIGKILL)
            # Reap it if we are its parent (same process started and stopped it).
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def reset(self) -> None:
        """Stop and delete the data dir (keeps the cache)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ", 1)[0]


def ensure_system_user(name: str) -> str:
    """Create a locked system user to run servers that refuse root; return its name."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
    return name
