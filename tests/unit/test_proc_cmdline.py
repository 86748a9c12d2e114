"""`kredete.stack.base.proc_cmdline` and `describe_pid` on real processes, read the instant Popen returns.

Popen returns once the child's close-on-exec pipe closes, before the kernel has set up the new program's
arguments; a read of /proc/<pid>/cmdline in that window comes back empty (measured here: 3% of reads on a quiet
machine, 78% with the cores busy). CI failed on it: a stale pid file's `sleep` was reported as "not running".
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from config.processes import stat_fields
from kredete.stack.base import describe_pid, proc_cmdline


def test_a_program_just_started_is_named_by_its_own_command_line():
    seen: list[str] = []
    for _ in range(300):  # without the settle, ~9 of 300 read empty even on a quiet machine
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        try:
            seen.append(describe_pid(proc.pid))
            assert proc_cmdline(proc.pid) == ["sleep", "300"]
        finally:
            proc.kill()
            proc.wait()
    assert set(seen) == {"`sleep`"}, {s: seen.count(s) for s in set(seen)}


def test_a_gone_process_and_a_zombie_are_not_running_at_once():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert proc_cmdline(proc.pid) is None and describe_pid(proc.pid) == "not running"

    zombie = subprocess.Popen(["true"])
    try:
        # Not reaped yet: a zombie has no command line and is not running.
        deadline = time.monotonic() + 10
        while proc_cmdline(zombie.pid) != [] and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        assert describe_pid(zombie.pid) == "not running"
        assert time.monotonic() - started < 0.5, "a zombie is not waited on for a command line"
    finally:
        zombie.wait()


def _a_kernel_thread() -> int | None:
    for proc in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(int(proc.name))
        if fields and fields[1] == "2":  # a child of kthreadd
            return int(proc.name)
    return None


def test_a_kernel_thread_is_not_waited_on_and_not_called_gone():
    pid = _a_kernel_thread()
    if pid is None:
        pytest.skip("no kernel thread is visible in this pid namespace")
    started = time.monotonic()
    assert describe_pid(pid) == "a process with no command line (a kernel thread)"
    assert time.monotonic() - started < 0.5
