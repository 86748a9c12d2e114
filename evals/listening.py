"""A server as a real process for `evals/` and `bench/`: started in its own session, waited for until it
listens, stopped on leaving. Ours (`kredete serve`) and the peers the benchmarks compare it with alike."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

LOG_TAIL = 3000


@contextlib.contextmanager
def listening_process(argv: Sequence[str], *, port: int, env: Mapping[str, str], log_path: Path, what: str,
                      timeout_s: float = 60, cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` with its output in `log_path`; yield the process once it accepts TCP on `port`. On leaving it
    gets SIGTERM, then SIGKILL after 15 s. A process that exits or does not listen in time raises RuntimeError
    naming `what`, with the end of its log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"{what} exited ({proc.returncode}):\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not listen on {port} within {timeout_s}s:\n{_tail(log_path)}")
                time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-LOG_TAIL:]
