"""PostgreSQL 15 primary and two streaming read replicas, from Debian's `postgresql-15`.

The primary archives its WAL with pgBackRest (`archive_command`, settings in `.local/postgres/archive.conf`,
written by kredete/stack/pgbackrest.py); each replica sets `cluster_name`, which its WAL receiver reports as
its application_name in the primary's pg_stat_replication (how the store matches lag to a replica).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from config import ports
from config.processes import pid_exists
from config.secrets import local_secrets
from config.settings import get_settings
from kredete.stack.base import (
    Server,
    StackError,
    apt_install,
    describe_pid,
    ensure_system_user,
    logger,
    pid_alive,
    port_open,
    proc_cmdline,
    run,
)

PG_BIN = Path(os.environ.get("KREDETE_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_USER = "kredete"  # also kredete/stack/pgbackrest.py RUN_USER
SUPERUSER = "kredete"


def ensure_postgres_installed() -> None:
    if not (PG_BIN / "postgres").exists():
        apt_install("postgresql-15", "postgresql-contrib")
    if not (PG_BIN / "postgres").exists():
        raise StackError(f"postgresql-15 installed but {PG_BIN}/postgres is missing; set KREDETE_PG_BIN")


def _own(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), user, user)


def system_identifier(pgdata: Path, user: str | None = None) -> str | None:
    """A data dir's `Database system identifier` (from pg_control; works stopped or running)."""
    if not (pgdata / "global" / "pg_control").exists():
        return None
    try:
        out = run([PG_BIN / "pg_controldata", "-D", pgdata], user=user, timeout=30)
    except StackError:
        return None
    for line in out.splitlines():
        if line.startswith("Database system identifier:"):
            return line.split(":", 1)[1].strip()
    return None


def _is_postgres(pid: int) -> bool:
    """A postmaster or one of its backends (their titles start with `postgres`)."""
    argv = proc_cmdline(pid)
    return bool(argv) and Path(argv[0].split()[0]).name.rstrip(":") in ("postgres", "postmaster")


def _postgres_in(pgdata: Path) -> set[int]:
    """The postgres processes whose working directory is this data dir (the postmaster and its backends all
    run there; other clusters' processes do not; a zombie has no working directory)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_postgres(int(entry.name)):
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == str(pgdata):
                    found.add(int(entry.name))
    return found


def _postgres_left_in(pgdata: Path, lock_pid: int, grace: float) -> bool:
    """Whether postgres processes still run in this data dir after waiting up to `grace` seconds for them to
    exit. The backends of a postmaster killed with -9 outlive it for a moment (each notices its death, and
    unmapping shared memory takes time on a loaded machine); a start in that moment fails on the lock. The
    lock's own pid running there is the server itself: no wait."""
    deadline = time.monotonic() + grace
    while running := _postgres_in(pgdata):
        if lock_pid in running or time.monotonic() >= deadline:
            return True
        time.sleep(0.1)
    return False


class _PostgresBase(Server):
    start_timeout = 60.0
    orphan_grace = 15.0  # how long a start waits for the backends of a killed postmaster to exit

    def run_as(self) -> str | None:
        return RUN_USER if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def provision(self) -> None:
        ensure_postgres_installed()
        if os.geteuid() == 0:
            ensure_system_user(RUN_USER)

    def version(self) -> str:
        out = run([PG_BIN / "postgres", "--version"]).strip()
        return "PostgreSQL " + out.split()[2]

    def binary_name(self) -> str:
        return "postgres"

    def command(self) -> tuple[list[str], dict[str, str]]:
        # -p on the command line wins over the `port` written into the config at initdb/basebackup time,
        # so KREDETE_PORT_POSTGRES / KREDETE_PORT_POSTGRES_REPLICA move an existing cluster too.
        return [str(PG_BIN / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)], {}

    def url(self) -> str:
        pw = local_secrets()["postgres_superuser"]
        return f"postgresql://{SUPERUSER}:{pw}@127.0.0.1:{self.port}/kredete"

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            run([PG_BIN / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"], timeout=5)
        except StackError:
            return False
        return True

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, RUN_USER, RUN_USER)
            os.chmod(self.data_dir, 0o700)
        self._clear_stale_locks()

    def _clear_stale_locks(self) -> None:
        """Remove lock files a killed postmaster left behind once their pid belongs to another process.

        PostgreSQL refuses to start while its socket lock (`.s.PGSQL.<port>.lock`) or `postmaster.pid` names a
        pid it can signal, and cannot tell a reused pid from a running server: after a kill -9 (a drill, a
        crash) any process of the server's user that got the pid (a backend of another cluster, a pgBackRest
        push) blocks the restart with "lock file ... already exists". pid_max is 32768 here; a test run wraps
        it; and an orphaned postmaster killed with -9 stays a zombie here, which `kill(pid, 0)` still finds. Called
        only when none of our servers runs and the port is free. Kept: a pid that is gone (PostgreSQL's own
        check handles it) and any lock while a postgres process still runs in this data dir (a backend left by
        a killed postmaster still holds its shared memory), once `orphan_grace` has given such backends the
        moment they take to exit.
        """
        locks = ((self.data_dir / f".s.PGSQL.{self.port}.lock", self.data_dir / f".s.PGSQL.{self.port}"),
                 (self.pgdata / "postmaster.pid", None))
        checked = False  # one look through /proc answers for both locks
        for lock, socket_file in locks:
            try:
                pid = int(lock.read_text().split("\n", 1)[0].strip())
            except (OSError, ValueError):
                continue
            # PostgreSQL's own check: a zombie counts (pid_alive says no). An orphan killed with -9 stays a
            # zombie until its new parent reaps it, and this machine's init does not.
            if not pid_exists(pid):
                continue
            if not checked:
                if _postgres_left_in(self.pgdata, pid, self.orphan_grace):
                    return
                checked = True
            lock.unlink(missing_ok=True)
            if socket_file is not None:
                socket_file.unlink(missing_ok=True)
            message = (f"removed a stale lock file {lock.name}: its pid {pid} is now {describe_pid(pid)}, not this "
                       "server")
            self.notes.append(message)
            logger.warning("%s: %s", self.name, message)

    def system_identifier(self) -> str | None:
        """The cluster's `Database system identifier` (from pg_control; works stopped or running)."""
        return system_identifier(self.pgdata, self.run_as())

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT, what `pg_ctl stop -m fast` sends): open sessions are ended and a shutdown
        checkpoint is written, so pooled clients cannot hold the stop for 30 s (a smart shutdown waits for
        every session to leave) and the next start needs no crash recovery. Waits until the postmaster has
        removed its lock file, so a start right after cannot collide with it. Still running after `timeout`:
        an immediate shutdown (SIGQUIT), then SIGKILL of what is left."""
        import signal

        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while (self.pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            # pid_alive, not /proc/<pid>: a postmaster started by this very process (tests, drills) stays a
            # zombie until reaped, and waiting for its /proc entry cost the whole timeout on every stop
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not pid_alive(pid):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
                self.pid_file.unlink(missing_ok=True)  # stopped as asked: not a stale pid file
                return
            logger.warning("%s: fast shutdown did not finish in %.0fs; immediate shutdown", self.name, timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGQUIT)
        super().stop(timeout=5.0)

    def stop_fast(self, timeout: float = 60.0) -> None:
        """The same as `stop` (kept for callers that say so explicitly)."""
        self.stop(timeout)

    def _psql(self, sql: str, db: str = "postgres") -> str:
        pw = local_secrets()["postgres_superuser"]
        env = {**os.environ, "PGPASSWORD": pw}
        return run([PG_BIN / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", db,
                    "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], env=env, timeout=60)


class PostgresPrimary(_PostgresBase):
    name = "postgres"
    port = ports.POSTGRES

    def __init__(self, *, archive: bool | None = None) -> None:
        super().__init__()
        #: False (the `lean` profile, the default under it): never archives WAL, even where an earlier `default`
        #: stack set it up.
        self.archive = get_settings().stack_profile != "lean" if archive is None else archive

    def prepare(self) -> None:
        self._prepare_dir()
        if (self.pgdata / "PG_VERSION").exists():
            return
        # A half-initialised cluster (initdb interrupted) is removed and made again.
        shutil.rmtree(self.pgdata, ignore_errors=True)
        secrets = local_secrets()
        pwfile = self.data_dir / "pwfile"
        pwfile.write_text(secrets["postgres_superuser"])
        if os.geteuid() == 0:
            shutil.chown(pwfile, RUN_USER, RUN_USER)
        try:
            run([PG_BIN / "initdb", "-D", self.pgdata, "-U", SUPERUSER, f"--pwfile={pwfile}",
                 "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8",
                 "--data-checksums"], user=self.run_as(), timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# --- kredete local stack ---\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.data_dir}'\n"
                "wal_level = replica\nmax_wal_senders = 10\nwal_keep_size = '128MB'\nhot_standby = on\n"
                # archive_timeout switches a 16 MB segment every 15 s even when idle; with the default
                # max_wal_size (1 GB) each node kept about 1.3 GB of spent WAL and a test run filled the disk
                "max_wal_size = '256MB'\nmin_wal_size = '64MB'\n"
                "shared_buffers = '256MB'\nmax_connections = 200\n"
                "log_min_duration_statement = 500\nlog_lock_waits = on\ndeadlock_timeout = '1s'\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        hba = self.pgdata / "pg_hba.conf"
        with hba.open("a") as fh:
            fh.write("host replication replicator 127.0.0.1/32 scram-sha-256\n")

    def command(self) -> tuple[list[str], dict[str, str]]:
        from kredete.stack.pgbackrest import write_archive_conf

        argv, env = super().command()
        if not self.archive:
            self.archive_conf.unlink(missing_ok=True)
        elif (self.pgdata / "PG_VERSION").exists():
            write_archive_conf(self)
            self._include_archive_conf()
        return argv, env

    @property
    def archive_conf(self) -> Path:
        """WAL archiving settings (pgBackRest), included by postgresql.conf; absent: no archiving."""
        return self.data_dir / "archive.conf"

    def _include_archive_conf(self) -> None:
        """Clusters made before archiving existed get the include line too (idempotent)."""
        conf = self.pgdata / "postgresql.conf"
        if not conf.exists():
            return
        line = f"include_if_exists = '{self.archive_conf}'\n"
        if line not in conf.read_text():
            with conf.open("a") as fh:
                fh.write("# WAL archiving to the pgBackRest repository (kredete/stack/pgbackrest.py)\n" + line)

    def start(self) -> None:
        super().start()
        # archive_mode needs a restart: a primary started before archiving was configured is restarted once.
        if self.archive_conf.exists() and self._psql("SHOW archive_mode").strip() != "on":
            self.notes.append("restarted to turn on WAL archiving (archive_mode needs a restart)")
            self.stop_fast()
            super().start()

    def after_start(self) -> None:
        # A restored data dir accepts read-only connections while it still replays WAL: wait for the end
        # of recovery (promotion) before the one-time setup, which writes.
        deadline = time.monotonic() + 1800
        while self._psql("SELECT pg_is_in_recovery()").strip() == "t" and time.monotonic() < deadline:
            time.sleep(0.5)
        secrets = local_secrets()
        exists = self._psql("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'")
        if not exists.strip():
            self._psql(f"CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '{secrets['postgres_replicator']}'")
        if not self._psql("SELECT 1 FROM pg_database WHERE datname = 'kredete'").strip():
            self._psql("CREATE DATABASE kredete")
        self._psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db="kredete")


class PostgresReplica(_PostgresBase):
    """Hot standby of the local primary. Healthy only while it streams WAL from *that* primary."""

    name = "postgres-replica"
    port = ports.POSTGRES_REPLICA

    def __init__(self, primary: PostgresPrimary, name: str | None = None, port: int | None = None) -> None:
        if name:
            self.name = name
        if port:
            self.port = port
        super().__init__()
        self.primary = primary
        #: Where this start's lines begin in the server log (what `_wal_gone` reads).
        self._log_mark = 0
        self._rebuild = False

    def start(self) -> None:
        """Start (see Server.start); a standby that fell behind further than the primary keeps WAL can never
        catch up by streaming ("requested WAL segment ... has already been removed"): it is rebuilt from the
        primary (pg_basebackup), what an operator does, instead of waiting out the timeout."""
        self._mark_log()
        try:
            super().start()
        except StackError:
            if not self._wal_gone():
                raise
            message = "rebuilt from the primary: it had removed the WAL this standby still needed"
            logger.warning("%s: %s", self.name, message)
            self.notes.append(message)
            self._mark_log()
            self._rebuild = True
            try:
                super().start()
            finally:
                self._rebuild = False

    def _mark_log(self) -> None:
        self._log_mark = self.log_file.stat().st_size if self.log_file.exists() else 0

    def _wal_gone(self) -> bool:
        """The WAL receiver, since this start, was refused WAL the primary no longer has."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(self._log_mark)
                return b"has already been removed" in fh.read()
        except OSError:
            return False

    def _wait_healthy(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            if self.healthy():
                return True
            if self._wal_gone():
                return False  # waiting cannot help
            time.sleep(0.25)
        return False

    def replication_problem(self) -> str | None:
        """None when this is a standby of the primary with a streaming WAL receiver; else what is wrong.

        pg_isready alone answers for a standby that lost its primary, or one whose primary was
        re-initialised (it keeps serving the old data): neither is healthy.
        """
        try:
            row = self._psql("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver LIMIT 1)")
        except StackError as exc:
            return f"the replica does not answer queries ({str(exc).splitlines()[-1][:200]})"
        in_recovery, _, receiver = row.strip().partition("|")
        if in_recovery != "t":
            return "not a standby any more (promoted?): `kredete stack reset --only postgres-replica` then `stack up`"
        mismatch = self.other_primary()
        if mismatch:
            return mismatch
        if receiver != "streaming":
            return (f"WAL receiver is {receiver or 'not running'}: not streaming from the primary on port "
                    f"{self.primary.port}, reads may be stale")
        return None

    def other_primary(self) -> str | None:
        """Set when this replica's cluster is not the primary's (the primary was re-initialised)."""
        mine, theirs = self.system_identifier(), self.primary.system_identifier()
        if mine and theirs and mine != theirs:
            return (f"replica of another primary (system identifier {mine}, the primary's is {theirs}): "
                    "`kredete stack up` rebuilds it")
        return None

    def healthy(self) -> bool:
        if not super().healthy():
            self.problem = ""
            return False
        self.problem = self.replication_problem() or ""
        return not self.problem

    def broken(self) -> str | None:
        return self.other_primary()

    def prepare(self) -> None:
        self._prepare_dir()
        if not self.primary.healthy():
            raise StackError("the read replica needs the primary running: `kredete stack up` starts both "
                             "(`--only postgres-replica` starts the primary first)")
        standby = (self.pgdata / "standby.signal").exists() and (self.pgdata / "PG_VERSION").exists()
        if standby and not self.other_primary() and not self._rebuild:
            self._follow_primary_port()
            self._name_cluster()
            return
        # No standby yet, one of a cluster the primary no longer is (its data is not the primary's), or one too far
        # behind to stream: build.
        shutil.rmtree(self.pgdata, ignore_errors=True)
        secrets = local_secrets()
        env = {**os.environ, "PGPASSWORD": secrets["postgres_replicator"]}
        argv = [str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U",
                "replicator", "-D", str(self.pgdata), "-R", "-X", "stream", "-c", "fast"]
        if self.run_as():
            # setpriv drops the environment's HOME but keeps PGPASSWORD.
            argv = ["setpriv", f"--reuid={RUN_USER}", f"--regid={RUN_USER}", "--init-groups", "--", *argv]
        run(argv, env=env, timeout=600)
        with (self.pgdata / "postgresql.auto.conf").open("a") as fh:
            fh.write(f"port = {self.port}\nunix_socket_directories = '{self.data_dir}'\n"
                     "hot_standby_feedback = on\n"
                     # A standby never archives (archive_mode = on archives only on a primary), and the
                     # primary's include file is not in this data dir anyway.
                     "archive_mode = off\n")
        self._name_cluster()
        # The replica accepts reads only; the password must survive in primary_conninfo.
        auto = self.pgdata / "postgresql.auto.conf"
        text = auto.read_text()
        if "password=" not in text:
            text = text.replace("user=replicator", f"user=replicator password={secrets['postgres_replicator']}")
            auto.write_text(text)

    def _name_cluster(self) -> None:
        """cluster_name = this server's name: the primary's pg_stat_replication shows it as application_name."""
        auto = self.pgdata / "postgresql.auto.conf"
        text = auto.read_text()
        if f"cluster_name = '{self.name}'" not in text:
            text = re.sub(r"(?m)^cluster_name = .*\n", "", text)
            auto.write_text(text + f"cluster_name = '{self.name}'\n")

    def _follow_primary_port(self) -> None:
        """Point primary_conninfo at the primary's current port (KREDETE_PORT_POSTGRES may have moved it)."""
        auto = self.pgdata / "postgresql.auto.conf"
        text = auto.read_text()
        fixed = re.sub(r"(primary_conninfo = '[^\n]*?\bport=)\d+", rf"\g<1>{self.primary.port}", text)
        if fixed != text:
            auto.write_text(fixed)

    def url(self) -> str:
        pw = local_secrets()["postgres_superuser"]
        return f"postgresql://{SUPERUSER}:{pw}@127.0.0.1:{self.port}/kredete"
