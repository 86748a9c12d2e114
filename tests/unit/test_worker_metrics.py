"""A starting worker forgets the gauges of workers that are gone (killed, or exited and not yet reaped), and
keeps those of live ones and its own: real processes, files named as prometheus-client names them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from guards import worker_metrics


def _files(path, pid: int) -> list[str]:
    names = [f"gauge_all_{pid}.db", f"gauge_livesum_{pid}.db", f"counter_{pid}.db"]
    for name in names:
        (path / name).touch()
    return names


def _zombie() -> subprocess.Popen:
    """A child that has exited and that nobody has waited for yet: it still answers kill(0)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    return proc


def test_gauges_of_dead_and_zombie_workers_go_and_counts_stay(tmp_path, monkeypatch):
    monkeypatch.setenv(worker_metrics.ENV, str(tmp_path))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    zombie = _zombie()
    try:
        for pid in (os.getpid(), live.pid, dead.pid, zombie.pid):
            _files(tmp_path, pid)
        worker_metrics.sweep_dead()
        left = {f.name for f in tmp_path.iterdir()}
    finally:
        live.kill()
        live.wait()
        zombie.wait()
    for pid in (os.getpid(), live.pid):
        assert {f"gauge_all_{pid}.db", f"gauge_livesum_{pid}.db", f"counter_{pid}.db"} <= left
    for pid in (dead.pid, zombie.pid):
        assert f"gauge_all_{pid}.db" not in left and f"gauge_livesum_{pid}.db" not in left
        assert f"counter_{pid}.db" in left, "a gone worker's counts stay in the totals"
