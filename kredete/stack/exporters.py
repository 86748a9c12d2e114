"""Exporters of the local stack: Debian's postgres and redis exporters, and the kredete collector.

* one `prometheus-postgres-exporter` per PostgreSQL server of the stack plan (primary and every replica),
  logging in as `kredete_monitor` (member of `pg_monitor`: statistics, no table data), with the custom
  queries of `monitoring/postgres_queries.yml` (replication lag per standby, pg_stat_statements, slots);
* one `prometheus-redis-exporter` in multi-target mode (`/scrape?target=`), so every Redis node of the plan
  (one today, a cluster's six later) is scraped through it as the `exporter` ACL user;
* the collector (`python -m kredete.ops.collector`): OpenSearch cluster/node/index stats and slow-log
  thresholds, disk per store data dir and per bucket, outbox and search-sync lag, backup age.

A monitoring server watches one data server (`watches`): when that store is external, its exporter is not
run locally (the managed service's own monitoring applies) and `stack status` says so.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

from config import ports
from config.monitoring import monitoring_settings
from config.paths import REPO_ROOT
from config.secrets import local_secrets
from kredete.stack.base import Server, StackError, apt_install, port_open, run

MONITORING_DIR = REPO_ROOT / "monitoring"
MONITOR_ROLE = "kredete_monitor"
#: Time, pid, application (`kredete:<request id>` during an MCP call), user@database.
LOG_LINE_PREFIX = "%m [%p] app=%a %u@%d "
REDIS_USER = "exporter"


def apt_binary(binary: str, package: str) -> str:
    """Path of a Debian package's binary, installing the package when it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    apt_install(package, recommends=False)
    found = shutil.which(binary)
    if not found:
        raise StackError(f"{package} installed but `{binary}` is not on PATH")
    return found


def debian_version(package: str) -> str:
    out = run(["dpkg-query", "-W", "-f=${Version}", package]).strip()
    if not out:
        raise StackError(f"{package} is not installed")
    return out


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http://127.0.0.1 only
            return 200 <= resp.status < 300
    except Exception:
        return False


class MonitoringServer(Server):
    """A server of the monitoring stack; `watches` names the data server it exposes (None: the stack)."""

    watches: str | None = None
    #: Prometheus job of its scrape target (None: it is not scraped as a target of its own).
    job: str | None = None
    package: str = ""
    binary: str = ""

    def provision(self) -> None:
        apt_binary(self.binary, self.package)

    def binary_path(self) -> str:
        found = shutil.which(self.binary)
        if not found:
            raise StackError(f"{self.binary} is not installed: run `kredete stack up` (installs Debian's "
                             f"{self.package})")
        return found

    def binary_name(self) -> str:
        return self.binary

    def version(self) -> str:
        return f"{self.package} {debian_version(self.package)}"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        return port_open(self.port) and http_ok(f"{self.url()}/metrics")


class PostgresExporter(MonitoringServer):
    """prometheus-postgres-exporter for one PostgreSQL server of the stack."""

    package = binary = "prometheus-postgres-exporter"
    job = "postgres"

    def __init__(self, target: Server, index: int, *, role: str) -> None:
        self.name = f"{target.name}-exporter"
        self.port = ports.postgres_exporter(target.name, index)
        self.watches = target.name
        super().__init__()
        self.target = target
        self.role = role

    def _queries(self) -> str:
        slow_ms = int(monitoring_settings().alert_slow_query_s * 1000)
        return (MONITORING_DIR / "postgres_queries.yml").read_text().replace("{slow_ms}", str(slow_ms))

    def start(self) -> None:
        # The exporter reads its queries once, at start: a running one with other queries (the file or the
        # slow threshold changed) is restarted, or it would go on answering with the old definitions.
        rendered = self.data_dir / "queries.yml"
        if self.pid() and rendered.exists() and rendered.read_text() != self._queries():
            self.notes.append("restarted: custom queries changed")
            self.stop()
        super().start()

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "queries.yml").write_text(self._queries())
        secret = self.data_dir / "password"
        secret.write_text(local_secrets()["postgres_exporter"])
        os.chmod(secret, 0o600)
        primary = getattr(self.target, "primary", self.target)
        if primary.pid() and primary.healthy():
            ensure_monitor_role(primary)
        if self.target is not primary and self.target.pid() and self.target.healthy():
            set_log_prefix(self.target)  # a replica keeps its own postgresql.auto.conf

    def command(self) -> tuple[list[str], dict[str, str]]:
        from config.settings import get_settings

        env = {"DATA_SOURCE_URI": f"127.0.0.1:{self.target.port}/{get_settings().postgres_db}?sslmode=disable",
               "DATA_SOURCE_USER": MONITOR_ROLE, "DATA_SOURCE_PASS_FILE": str(self.data_dir / "password")}
        return [self.binary_path(), f"--web.listen-address=127.0.0.1:{self.port}",
                f"--extend.query-path={self.data_dir / 'queries.yml'}", "--disable-settings-metrics",
                "--log.level=warn", "--log.format=json"], env

    def scrape_labels(self) -> dict[str, str]:
        return {"server": self.target.name, "role": self.role}


def ensure_monitor_role(primary) -> None:
    """The exporters' login (idempotent), pg_stat_statements settings that keep literals out of it, and a log
    line prefix that names the session's application (an MCP call's request id, `kredete:<id>`)."""
    # CREATE ROLE ... PASSWORD would keep its literal in pg_stat_statements.
    _alter_system(primary, {"pg_stat_statements.track_utility": "off", "log_line_prefix": LOG_LINE_PREFIX})
    pw = local_secrets()["postgres_exporter"].replace("'", "''")
    primary._psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kredete_monitor') THEN "
        f"CREATE ROLE kredete_monitor LOGIN PASSWORD '{pw}'; ELSE ALTER ROLE kredete_monitor LOGIN PASSWORD '{pw}'; "
        "END IF; END $$")
    primary._psql("GRANT pg_monitor TO kredete_monitor")


def set_log_prefix(server) -> None:
    _alter_system(server, {"log_line_prefix": LOG_LINE_PREFIX})


def _alter_system(server, wanted: dict[str, str]) -> None:
    changed = False
    for name, value in wanted.items():
        if server._psql(f"SHOW {name}").strip() != value.strip():
            server._psql(f"ALTER SYSTEM SET {name} = '{value}'")
            changed = True
    if changed:
        server._psql("SELECT pg_reload_conf()")


class RedisExporter(MonitoringServer):
    """prometheus-redis-exporter in multi-target mode: Prometheus passes each Redis node as `target`."""

    name = "redis-exporter"
    port = ports.REDIS_EXPORTER
    package = binary = "prometheus-redis-exporter"
    job = "redis"
    watches = "redis"

    def __init__(self, targets: list[Server]) -> None:
        super().__init__()
        #: The stack's Redis servers: a standalone server, or a cluster (every node of it is scraped).
        self.targets = targets

    def nodes(self) -> list[tuple[str, int]]:
        """(server name, port) of every Redis node."""
        return [(s.name, p) for s in self.targets for p in getattr(s, "node_ports", (s.port,))]

    def prepare(self) -> None:
        super().prepare()
        for server in self.targets:
            # The exporter's ACL user is in redis.conf, which Redis reads at start: a Redis started before
            # the monitoring stack existed is restarted once to load it (AOF and nodes.conf keep its state).
            if server.pid() and server.healthy() and not self._can_login(server.port):
                server.stop()
                server.start()
                self.notes.append(f"restarted {server.name} once to load the `{REDIS_USER}` ACL user")

    @staticmethod
    def _can_login(port: int) -> bool:
        try:
            out = run(["redis-cli", "-p", str(port), "--user", REDIS_USER, "--no-auth-warning", "PING"], timeout=5,
                      env={**os.environ, "REDISCLI_AUTH": local_secrets()["redis_exporter"]})
        except StackError:
            return False
        return out.strip() == "PONG"

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {"REDIS_USER": REDIS_USER, "REDIS_PASSWORD": local_secrets()["redis_exporter"],
               "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{self.port}", "REDIS_ADDR": ""}
        # No default target (REDIS_ADDR empty): every node comes from Prometheus as `/scrape?target=`.
        return [self.binary_path(), "-log-format=json"], env

    def healthy(self) -> bool:
        return port_open(self.port) and http_ok(f"{self.url()}/health")


class CollectorServer(MonitoringServer):
    """The kredete collector: what no Debian exporter reads (OpenSearch, disk, buckets, change feeds)."""

    name = "collector"
    port = ports.COLLECTOR
    job = "collector"
    start_timeout = 60.0

    def provision(self) -> None:
        """Pure Python in this checkout's virtualenv: nothing to install."""

    def binary_name(self) -> str:
        return Path(sys.executable).name

    def version(self) -> str:
        from importlib.metadata import version

        return f"kredete collector {version('kredete')}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "kredete.ops.collector", "--port", str(self.port),
                "--state-dir", str(self.data_dir)], {"PYTHONPATH": str(REPO_ROOT)}

    def healthy(self) -> bool:
        return port_open(self.port) and http_ok(f"{self.url()}/healthz")

