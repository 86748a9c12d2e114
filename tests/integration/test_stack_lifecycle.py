"""The stack's own behaviour: idempotent start, honest status, repair after a crash, clear port errors.

These use a separate Redis instance on its own port so the shared stack is never disturbed.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from kredete.stack.base import StackError, pid_alive
from kredete.stack.redis import RedisServer


class _ScratchRedis(RedisServer):
    name = "redis-lifecycle-test"
    port = 56479


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(tmp_path))
    # secrets are read from KREDETE_LOCAL_DIR too, so this instance has its own
    server = _ScratchRedis()
    server.provision()
    yield server
    server.stop()


def test_start_is_idempotent_and_status_is_true(scratch):
    scratch.start()
    pid = scratch.pid()
    assert pid and scratch.status().healthy
    scratch.start()  # second start: same process, nothing new
    assert scratch.pid() == pid
    scratch.stop()
    st = scratch.status()
    assert st.pid is None and st.healthy is False
    assert not pid_alive(pid)


def test_crashed_server_is_reported_and_repaired(scratch):
    scratch.start()
    pid = scratch.pid()
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scratch.status().healthy is False, "status must not claim a dead server is healthy"
    scratch.start()
    assert scratch.pid() != pid and scratch.status().healthy


def test_port_taken_by_a_stranger_gives_a_clear_error(scratch):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", scratch.port))
    sock.listen(1)
    try:
        with pytest.raises(StackError, match=rf"port {scratch.port} is in use by pids \[{os.getpid()}\]"):
            scratch.start()
        assert "taken by another process" in scratch.status().note
    finally:
        sock.close()


def test_half_provisioned_data_dir_is_repaired(monkeypatch):
    import shutil
    import uuid

    from kredete.paths import REPO_ROOT
    from kredete.stack.postgres import PostgresPrimary

    # Under the repo, not /tmp: the server's unprivileged user must be able to reach it.
    scratch_dir = REPO_ROOT / ".local" / "scratch" / uuid.uuid4().hex[:8]
    scratch_dir.mkdir(parents=True)
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(scratch_dir))

    class _ScratchPg(PostgresPrimary):
        name = "postgres-lifecycle-test"
        port = 55532

    pg = _ScratchPg()
    pg.provision()
    # An interrupted initdb leaves a pgdata without PG_VERSION.
    (pg.pgdata).mkdir(parents=True)
    (pg.pgdata / "garbage").write_text("half-written")
    try:
        pg.start()
        assert pg.status().healthy
        assert (pg.pgdata / "PG_VERSION").exists()
    finally:
        pg.stop()
        shutil.rmtree(scratch_dir, ignore_errors=True)
