"""Patroni (Debian `patroni`) over the three-member etcd: the HA profile's PostgreSQL.

Three members (ha-pg1..3), each a Patroni process running its own PostgreSQL 15. Patroni keeps the leader
lock in etcd (ttl 10 s, loop 2 s) and runs `synchronous_mode` (strict): one standby is synchronous (a commit
is acknowledged only once that standby has it), the other asynchronous; with no standby able to be
synchronous, commits wait rather than being acknowledged by the leader alone. When the leader dies, only the
synchronous standby may take over, so no acknowledged commit is lost. The members start together.

The application finds the primary by itself: its URLs name all three members with
`target_session_attrs=primary` (asyncpg, libpq and FerretDB's pgx all pick the one not in recovery;
`read-write` would refuse the agent role, whose sessions are read-only by default), and reads
use every member (the store skips the one that is not a standby). Patroni's REST API (`/cluster`,
`/leader`) is what the drill and `stack status` read the roles from.

Secrets (superuser and replication passwords) are in each member's patroni.yml (mode 0600), not on any
command line.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

from config import ports
from config.secrets import local_secrets
from config.settings import get_settings
from kredete.stack import pgbackrest
from kredete.stack.base import Server, StackError, apt_install, port_open, proc_cmdline, run
from kredete.stack.postgres import PG_BIN, RUN_USER, SUPERUSER, ensure_postgres_installed, system_identifier

SCOPE = "kredete-ha"
BIN = "/usr/bin/patroni"
MEMBERS = 3


def ensure_installed() -> None:
    if not Path(BIN).exists():
        apt_install("patroni")


def api_urls() -> list[str]:
    return [f"http://127.0.0.1:{p}" for p in ports.HA_PATRONI_API]


def cluster(timeout: float = 2.0) -> list[dict]:
    """Members as Patroni reports them (`GET /cluster` on any member): name, role, state, lag."""
    for url in api_urls():
        try:
            with urllib.request.urlopen(f"{url}/cluster", timeout=timeout) as resp:  # noqa: S310
                return json.loads(resp.read()).get("members", [])
        except (OSError, ValueError):
            continue
    return []


def leader(timeout: float = 2.0) -> dict | None:
    return next((m for m in cluster(timeout) if m.get("role") == "leader" and m.get("state") == "running"), None)


def wait_for(predicate, what: str, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise StackError(f"{what} within {timeout:.0f}s (Patroni members: {cluster()})")


class PatroniMember(Server):
    start_timeout = 120.0
    #: The members start together (`stack up` batches a start group): one wins the initialize key and
    #: bootstraps, the others clone it at once instead of one after the other.
    start_group = f"patroni:{SCOPE}"

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"ha-pg{index + 1}"
        self.port = ports.HA_POSTGRES[index]
        self.api_port = ports.HA_PATRONI_API[index]
        super().__init__()

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def config(self) -> Path:
        return self.data_dir / "patroni.yml"

    def run_as(self) -> str | None:
        return RUN_USER if os.geteuid() == 0 else None

    def provision(self) -> None:
        ensure_postgres_installed()
        ensure_installed()
        from kredete.stack.etcd import ensure_installed as etcd_installed

        etcd_installed()
        if os.geteuid() == 0:
            from kredete.stack.base import ensure_system_user

            ensure_system_user(RUN_USER)

    def version(self) -> str:
        out = run([BIN, "--version"], timeout=20).strip()
        pg = run([PG_BIN / "postgres", "--version"], timeout=10).split()[2]
        return f"Patroni {out.split()[-1]} + PostgreSQL {pg}"

    def binary_name(self) -> str:
        return "patroni"

    def owns(self, pid: int) -> bool:
        """Patroni is a Python script: argv is `python3 /usr/bin/patroni <our patroni.yml>` (or setpriv first)."""
        argv = proc_cmdline(pid) or []
        return any(a.endswith("/patroni") for a in argv) and str(self.config) in argv

    def prepare(self) -> None:
        from kredete.stack.etcd import wait_for_quorum

        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self.run_as()
        if user:
            shutil.chown(self.data_dir, user, user)
        os.chmod(self.data_dir, 0o700)
        wait_for_quorum()
        self.config.write_text(self._config_yaml())
        os.chmod(self.config, 0o600)
        if user:
            shutil.chown(self.config, user, user)

    def _config_yaml(self) -> str:
        import yaml

        sec = local_secrets()
        hosts = [f"127.0.0.1:{p}" for p in ports.ETCD_CLIENT]
        conf = {
            "scope": SCOPE, "namespace": "/kredete/", "name": self.name,
            "log": {"level": "WARNING"},
            "restapi": {"listen": f"127.0.0.1:{self.api_port}", "connect_address": f"127.0.0.1:{self.api_port}"},
            "etcd3": {"hosts": hosts},
            "bootstrap": {
                "dcs": {
                    "ttl": 10, "loop_wait": 2, "retry_timeout": 5,
                    # only the synchronous standby may be promoted: acknowledged commits survive a failover.
                    # Strict: with no synchronous standby left, commits wait for one instead of Patroni turning
                    # synchronous replication off (non-strict mode acknowledges them from the leader alone,
                    # and a failover right after loses them).
                    "synchronous_mode": True, "synchronous_mode_strict": True, "synchronous_node_count": 1,
                    "maximum_lag_on_failover": 1024 * 1024,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": {
                        "wal_level": "replica", "hot_standby": "on", "max_wal_senders": 10,
                        "max_replication_slots": 10, "wal_keep_size": "128MB", "max_connections": 200,
                        "max_wal_size": "256MB", "min_wal_size": "64MB",
                        "shared_buffers": "128MB", "wal_log_hints": "on", "hot_standby_feedback": "on",
                        "shared_preload_libraries": "pg_stat_statements", "password_encryption": "scram-sha-256",
                        # WAL to the pgBackRest repository from the first start (archive_mode needs one): a
                        # push fails, and the segment is kept, until `stack up` has made the stanza. Each
                        # member's archive_command is its own (below).
                        "archive_mode": "on", "archive_timeout": int(get_settings().archive_timeout_s),
                    }},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums",
                           {"auth-host": "scram-sha-256"}, {"auth-local": "peer"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.port}", "connect_address": f"127.0.0.1:{self.port}",
                "data_dir": str(self.pgdata), "bin_dir": str(PG_BIN), "pgpass": str(self.data_dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": sec["postgres_superuser"]},
                    "replication": {"username": "replicator", "password": sec["postgres_replicator"]},
                    "rewind": {"username": SUPERUSER, "password": sec["postgres_superuser"]},
                },
                "parameters": {"unix_socket_directories": str(self.data_dir),
                               "archive_command": pgbackrest.archive_command(self.pgdata)},
                # A replica's pg_basebackup asks the leader for a fast checkpoint: the default spread one
                # paced a fresh cluster's first checkpoint over 93 s of the HA profile's 113 s start.
                "basebackup": [{"checkpoint": "fast"}],
                "pg_hba": ["local all all peer", "host all all 127.0.0.1/32 scram-sha-256",
                           "host replication replicator 127.0.0.1/32 scram-sha-256"],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }
        return "# Written by kredete/stack/patroni.py; holds passwords: mode 0600.\n" + yaml.safe_dump(conf)

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [BIN, str(self.config)], {}

    def url(self) -> str:
        pw = local_secrets()["postgres_superuser"]
        return f"postgresql://{SUPERUSER}:{pw}@127.0.0.1:{self.port}/kredete"

    def healthy(self) -> bool:
        """Patroni answers and its PostgreSQL runs (leader or a streaming standby)."""
        if not port_open(self.api_port):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def system_identifier(self) -> str | None:
        return system_identifier(self.pgdata, self.run_as())

    def role(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/patroni", timeout=2) as resp:
                return json.loads(resp.read()).get("role")
        except (OSError, ValueError):
            return None

    def after_start(self) -> None:
        """The bootstrap leader gets the databases the application expects (idempotent, on the leader)."""
        lead = wait_for(leader, "no Patroni leader elected", 60)
        if lead["name"] != self.name:
            return
        psql("SELECT 1", db="postgres")
        if not psql("SELECT 1 FROM pg_database WHERE datname = 'kredete'").strip():
            psql("CREATE DATABASE kredete")
        psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db="kredete")

    def reset(self) -> None:
        super().reset()


def setup_backups(members: list[Server]) -> str:
    """The pgBackRest repository and stanza of this Patroni cluster, its current leader as pg1."""
    from kredete.stack import pgbackrest

    lead = wait_for(leader, "no Patroni leader", 60)
    primary = next(m for m in members if m.name == lead["name"])
    return pgbackrest.setup_ha_repository(primary, [m for m in members if m is not primary])


def ensure_backups(members: list[Server]) -> str | None:
    """`setup_backups` unless this cluster's stanza exists already; the repository made, or None."""
    from kredete.stack import pgbackrest

    if pgbackrest.is_ready(members[0].system_identifier() if members else None):
        return None
    return setup_backups(members)


def leader_port() -> int:
    lead = wait_for(leader, "no Patroni leader", 60)
    return int(str(lead["port"]))


def psql(sql: str, db: str = "postgres", port: int | None = None) -> str:
    """Run SQL on the current leader (or the given member) as the superuser."""
    pw = local_secrets()["postgres_superuser"]
    return run([PG_BIN / "psql", "-h", "127.0.0.1", "-p", str(port or leader_port()), "-U", SUPERUSER, "-d", db,
                "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], env={**os.environ, "PGPASSWORD": pw}, timeout=60)
