"""The stack's own behaviour: idempotent start, honest status, repair after a crash, clear port errors.

These use a separate Redis instance on its own port so the shared stack is never disturbed.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from config.errors import StackError
from evals.harness import free_port
from kredete.stack.base import describe_pid, pid_alive
from kredete.stack.redis import RedisServer

# Scratch servers take ports the kernel says are free now: fixed numbers inside the ephemeral range
# (32768-60999) were occasionally held by an outgoing connection of the same test run.


def _two_free_ports(avoid: tuple[int, ...] = ()) -> tuple[int, int]:
    ports: list[int] = []
    while len(ports) < 2:
        p = free_port()
        if p not in ports and p not in avoid:
            ports.append(p)
    return ports[0], ports[1]


class _ScratchRedis(RedisServer):
    name = "redis-lifecycle-test"
    port = free_port()


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


def test_cluster_stop_also_stops_nodes_started_under_another_port_offset(tmp_path, monkeypatch):
    """`stack down` without the KREDETE_PORT_OFFSET that `stack up` had looks for other ports: the nodes found in
    the cluster's data dir are stopped all the same (before, they kept running)."""
    from kredete.stack.redis import RedisClusterNode, RedisClusterServer

    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(tmp_path))
    port = free_port()
    stray = RedisClusterNode(port, tmp_path / "redis-cluster" / f"node-{port}")
    stray.provision()
    stray.start()
    try:
        pid = stray.pid()
        assert pid and stray.status().healthy
        other_ports = tuple(free_port() for _ in range(6))
        RedisClusterServer(node_ports=other_ports, data_dir=tmp_path / "redis-cluster").stop()
        assert stray.pid() is None and not pid_alive(pid)
    finally:
        stray.stop()


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

    from config.paths import REPO_ROOT
    from kredete.stack.postgres import PostgresPrimary

    # Under the repo, not /tmp: the server's unprivileged user must be able to reach it.
    scratch_dir = REPO_ROOT / ".local" / "scratch" / uuid.uuid4().hex[:8]
    scratch_dir.mkdir(parents=True)
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(scratch_dir))

    class _ScratchPg(PostgresPrimary):
        name = "postgres-lifecycle-test"
        port = free_port()

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


# --- pid files: only a process of ours is trusted or signalled ------------------------------------------

class _OtherScratchRedis(RedisServer):
    name = "redis-lifecycle-other"
    port = free_port()


@pytest.fixture
def stranger():
    """An unrelated program in its own process group (what a reused pid may be after a reboot)."""
    import subprocess

    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _running_sleep(proc):
    """Wait until `proc` runs `sleep` itself: setpriv execs it, and until then the pid is setpriv's."""
    deadline = time.monotonic() + 10
    while describe_pid(proc.pid) != "`sleep`" and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_stale_pid_file_of_an_unrelated_process_is_removed_not_signalled(scratch, stranger):
    scratch.data_dir.mkdir(parents=True, exist_ok=True)
    scratch.pid_file.write_text(str(stranger.pid))
    st = scratch.status()
    assert st.pid is None and st.healthy is False
    assert "stale pid file" in st.note and str(stranger.pid) in st.note and "`sleep`" in st.note
    assert not scratch.pid_file.exists(), "a stale pid file is removed"
    scratch.pid_file.write_text(str(stranger.pid))
    scratch.stop()
    scratch.pid_file.write_text(str(stranger.pid))
    scratch.start()  # starts its own server instead of trusting (or killing) the stranger
    assert scratch.pid() not in (None, stranger.pid) and scratch.status().healthy
    scratch.stop()
    assert stranger.poll() is None, "stop()/start() signalled a process that is not ours"


def test_pid_of_the_same_binary_for_another_data_dir_is_not_ours(scratch):
    other = _OtherScratchRedis()
    other.start()
    try:
        other_pid = other.pid()
        assert other_pid and other.owns(other_pid)
        scratch.data_dir.mkdir(parents=True, exist_ok=True)
        scratch.pid_file.write_text(str(other_pid))
        assert not scratch.owns(other_pid), "a redis-server of another data dir is not this server"
        assert scratch.pid() is None
        scratch.pid_file.write_text(str(other_pid))
        scratch.stop()
        assert pid_alive(other_pid) and other.status().healthy, "stop() killed another instance"
    finally:
        other.stop()


# --- PostgreSQL scratch clusters: replica identity, ports on an existing cluster -------------------------

@pytest.fixture(scope="module")
def scratch_pg():
    """A primary and its replica of our own (own dir under .local/scratch, own ports), torn down after."""
    import shutil
    import uuid

    from config.paths import REPO_ROOT
    from kredete.stack.postgres import PostgresPrimary, PostgresReplica

    # Under the repo, not /tmp: the server's unprivileged user must be able to reach it.
    scratch_dir = REPO_ROOT / ".local" / "scratch" / uuid.uuid4().hex[:8]
    scratch_dir.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("KREDETE_LOCAL_DIR", str(scratch_dir))

    class Primary(PostgresPrimary):
        name = "pg-primary-test"
        port = free_port()
        start_timeout = 30.0

    class Replica(PostgresReplica):
        name = "pg-replica-test"
        port = free_port()
        start_timeout = 30.0

    primary = Primary()
    replica = Replica(primary)
    primary.provision()
    try:
        primary.start()
        replica.start()
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()
        mp.undo()
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _wait_streaming(replica, timeout: float = 30) -> None:
    """The replica streams again (its primary was restarted)."""
    deadline = time.monotonic() + timeout
    while not replica.healthy() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replica.status().healthy


def test_replica_of_a_reinitialised_primary_is_unhealthy_and_rebuilt(scratch_pg):
    import shutil

    primary, replica = scratch_pg
    assert replica.status().healthy
    assert replica.system_identifier() == primary.system_identifier()
    old_id = primary.system_identifier()

    # The primary is re-initialised: same port, new cluster. The old replica still answers pg_isready.
    primary.stop()
    shutil.rmtree(primary.pgdata)
    primary.start()
    assert primary.system_identifier() != old_id
    st = replica.status()
    assert st.pid is not None, "the replica process still runs"
    assert st.healthy is False, "a replica of another primary must not show healthy"
    assert "another primary" in st.note

    replica.start()  # what `stack up` does: rebuilds it from the current primary
    assert replica.status().healthy
    assert replica.system_identifier() == primary.system_identifier()
    assert replica._psql("SELECT status FROM pg_stat_wal_receiver").strip() == "streaming"


def test_replica_whose_primary_is_down_is_not_healthy(scratch_pg):
    primary, replica = scratch_pg
    assert replica.status().healthy
    primary.stop()
    try:
        deadline = time.monotonic() + 15
        while replica.healthy() and time.monotonic() < deadline:
            time.sleep(0.2)
        st = replica.status()
        assert st.pid and not st.healthy and "WAL receiver" in st.note
    finally:
        primary.start()
    _wait_streaming(replica)


def test_ports_can_change_on_an_existing_cluster(scratch_pg):
    from kredete.stack.base import port_open

    primary, replica = scratch_pg
    old = (primary.port, replica.port)
    replica.stop()
    primary.stop()
    primary.port, replica.port = _two_free_ports(old)  # what KREDETE_PORT_POSTGRES(_REPLICA) do for the stack
    try:
        primary.start()
        replica.start()
        assert not port_open(old[0]) and not port_open(old[1])
        assert primary._psql("SHOW port").strip() == str(primary.port)
        assert replica._psql("SHOW port").strip() == str(replica.port)
        assert replica.status().healthy, "the replica streams from the primary's new port"
    finally:
        replica.stop()
        primary.stop()
        primary.port, replica.port = old
        primary.start()
        replica.start()



@pytest.fixture
def run_user_stranger():
    """An unrelated program of the user PostgreSQL runs as: one PostgreSQL can signal, so it takes a lock file
    naming its pid for a live server (a root-owned one answers EPERM, which PostgreSQL treats as gone)."""
    import subprocess

    from kredete.stack.postgres import RUN_USER

    argv = ["sleep", "300"]
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={RUN_USER}", f"--regid={RUN_USER}", "--init-groups", "--", *argv]
    proc = _running_sleep(subprocess.Popen(argv, start_new_session=True))
    yield proc
    proc.kill()
    proc.wait()


def test_lock_files_of_a_killed_primary_naming_a_reused_pid_do_not_block_its_restart(scratch_pg,
                                                                                   run_user_stranger):
    """kill -9 leaves the postmaster's lock files; once their pid belongs to another process of the server's
    user, PostgreSQL alone refuses to start ("lock file ... already exists"). A running server keeps them."""
    primary, replica = scratch_pg
    locks = [primary.data_dir / f".s.PGSQL.{primary.port}.lock", primary.pgdata / "postmaster.pid"]
    primary._clear_stale_locks()
    assert all(lock.exists() for lock in locks), "the lock files of the running server are kept"

    def kill9_naming(other: int) -> None:
        pid = primary.pid()
        assert pid
        # A crash kills the postmaster alone; its backends exit when they notice, a moment later. One held
        # (stopped) for a second: the start must wait for it rather than fail on the lock it keeps valid.
        backend = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        os.kill(backend, signal.SIGSTOP)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # started by this process: reap it, so only the lock files are left
        threading.Timer(1.0, os.kill, (backend, signal.SIGCONT)).start()
        assert all(lock.exists() for lock in locks), "kill -9 leaves both lock files"
        for lock in locks:
            lines = lock.read_text().split("\n")
            lock.write_text("\n".join([str(other), *lines[1:]]))

    import subprocess

    from kredete.stack.postgres import RUN_USER

    stranger = run_user_stranger
    # A zombie of the server's user (an orphaned postmaster killed with -9 stays one here: init does not reap it).
    argv = ["true"] if os.geteuid() != 0 else ["setpriv", f"--reuid={RUN_USER}", f"--regid={RUN_USER}",
                                                "--init-groups", "--", "true"]
    zombie = subprocess.Popen(argv)
    deadline = time.monotonic() + 10
    while pid_alive(zombie.pid) and time.monotonic() < deadline:  # pid_alive: a zombie is not alive
        time.sleep(0.05)
    try:
        # The pid reused by a postmaster of another cluster, then by an unrelated program, then held by a zombie.
        for reused_by, shown_as in ((replica.pid(), "`postgres`"), (stranger.pid, "`sleep`"),
                                    (zombie.pid, "not running")):
            kill9_naming(reused_by)
            primary.notes.clear()
            primary.start()
            assert primary.status().healthy
            notes = [n for n in primary.notes if "stale lock file" in n]
            assert len(notes) == 2 and all(str(reused_by) in n and shown_as in n for n in notes), primary.notes
        assert stranger.poll() is None and replica.pid(), "the processes holding the pid were not signalled"
    finally:
        zombie.wait()
        primary.start()
    _wait_streaming(replica)


def test_a_replica_too_far_behind_to_stream_is_rebuilt(scratch_pg):
    """Stopped while the primary moved on and recycled the WAL it needed, a standby can never catch up by
    streaming: `start` rebuilds it from the primary instead of timing out."""
    primary, replica = scratch_pg
    replica.stop()
    primary._psql("ALTER SYSTEM SET wal_keep_size = 0")
    primary._psql("SELECT pg_reload_conf()")
    try:
        primary._psql("CREATE TABLE IF NOT EXISTS churn (x int)")
        for _ in range(4):
            primary._psql("INSERT INTO churn SELECT generate_series(1, 1000)")
            primary._psql("SELECT pg_switch_wal()")
            primary._psql("CHECKPOINT")
        mark = replica.log_file.stat().st_size
        replica.notes.clear()
        replica.start()
        assert replica.status().healthy
        assert replica._psql("SELECT count(*) FROM churn").strip() == "4000", "the rebuilt standby has the writes"
        assert "has already been removed" in replica.log_file.read_text(errors="replace")[mark:]
        assert any("rebuilt from the primary" in n for n in replica.notes), replica.notes
    finally:
        primary._psql("ALTER SYSTEM RESET wal_keep_size")
        primary._psql("SELECT pg_reload_conf()")
