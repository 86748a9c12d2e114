"""Prometheus from Debian's `prometheus`: scrapes every target of the stack plan and evaluates the rules.

The configuration is rendered from the stack plan at every `stack up` (reloaded when it changed), so the
targets follow the plan: an exporter per PostgreSQL server (primary and every replica), the redis
exporter once per Redis node, FerretDB's debug endpoint, each MinIO's metrics, the collector (OpenSearch,
storage, change feeds) and Alertmanager. Processes that come and go (MCP servers over HTTP, benchmarks)
announce their `/metrics` in a file_sd file (`announce_metrics`) that they remove when they stop.

Rules come from `monitoring/rules/*.yml`, copied into the data dir with every `for:` capped by
`KREDETE_MONITOR_FOR_CAP_S` when set (test and bench profiles); the thresholds they compare against
are recorded as `kredete_alert_threshold{threshold=...}` from the monitoring settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from config import ports
from config.monitoring import MonitoringSettings, load_monitoring_settings
from config.paths import local_dir
from config.secrets import local_secrets
from kredete.stack.base import Server, StackError, pid_alive, run
from kredete.stack.exporters import MONITORING_DIR, MonitoringServer, http_ok

#: Jobs whose targets announce themselves (file_sd); anything else is static, from the stack plan.
ANNOUNCED_JOBS = ("mcp", "app")


def targets_dir() -> Path:
    return local_dir() / "prometheus" / "targets"


def _seconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


def _parse_duration(text: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", str(text)):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                                  "y": 31536000}[unit]
    return total


#: Alerts whose `for:` is a grace period, not a debounce: never capped. BackupMissing's 26 h is the time a new
#: stanza gets to make its first backup; capped, it fired on every fresh stack and, being critical, its
#: inhibition muted the warnings of the same instance (the outbox-lag drill's alert never reached the webhook).
UNCAPPED = frozenset({"BackupMissing"})


def render_rules(settings: MonitoringSettings) -> dict[str, str]:
    """Rule files by name: the repo's, `for:` capped when the profile asks, plus the thresholds."""
    out: dict[str, str] = {}
    cap = settings.monitor_for_cap_s
    for path in sorted((MONITORING_DIR / "rules").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        if cap is not None:
            for group in doc.get("groups", []):
                for rule in group.get("rules", []):
                    if "for" in rule and rule.get("alert") not in UNCAPPED and _parse_duration(rule["for"]) > cap:
                        rule["for"] = _seconds(cap)
        out[path.name] = (f"# From monitoring/rules/{path.name}"
                          f"{f' (for: capped at {cap:g}s)' if cap is not None else ''}; edits here are overwritten.\n"
                          + yaml.safe_dump(doc, sort_keys=False, width=120))
    thresholds = [{"record": "kredete_alert_threshold", "expr": f"vector({value!r})", "labels": {"threshold": name}}
                  for name, value in sorted(settings.thresholds().items())]
    out["_thresholds.yml"] = ("# The KREDETE_ALERT_* settings as series the rules compare against.\n"
                              + yaml.safe_dump({"groups": [{"name": "kredete-thresholds", "rules": thresholds}]},
                                               sort_keys=False))
    return out


def _static(job: str, targets: list[tuple[str, dict[str, str]]], **extra: Any) -> dict[str, Any]:
    return {"job_name": job, **extra,
            "static_configs": [{"targets": [t], "labels": labels} for t, labels in targets]}


def scrape_configs(servers: list[Server], settings: MonitoringSettings, token_file: Path) -> list[dict[str, Any]]:
    """One job per kind of target, from the servers the stack plan runs."""
    from kredete.stack.alertmanager import AlertmanagerServer
    from kredete.stack.exporters import CollectorServer, PostgresExporter, RedisExporter
    from kredete.stack.ferretdb import FerretDBServer
    from kredete.stack.minio import MinioServer

    timeout = _seconds(min(10.0, settings.monitor_scrape_interval_s))
    jobs: list[dict[str, Any]] = [
        _static("prometheus", [(f"127.0.0.1:{ports.PROMETHEUS}", {"server": "prometheus"})]),
    ]
    pg = [(f"127.0.0.1:{s.port}", s.scrape_labels()) for s in servers if isinstance(s, PostgresExporter)]
    if pg:
        # The exporter labels its custom queries' series with a `server` of its own (host:port): ours names
        # the stack's server.
        jobs.append(_static("postgres", pg, metric_relabel_configs=[{"regex": "exported_server",
                                                                      "action": "labeldrop"}]))
    redis = next((s for s in servers if isinstance(s, RedisExporter)), None)
    if redis is not None:
        jobs.append({
            "job_name": "redis", "metrics_path": "/scrape",
            "static_configs": [{"targets": [f"redis://127.0.0.1:{port}"], "labels": {"server": name}}
                               for name, port in redis.nodes()],
            # The node is the exporter's `target` parameter; the exporter is what Prometheus connects to.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "regex": "redis://(.*)", "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{redis.port}"},
            ],
        })
    # The HA profile: Patroni's REST API and etcd serve their own /metrics (leader, timeline, lag; raft).
    patroni = [(f"127.0.0.1:{s.api_port}", {"server": s.name}) for s in servers if hasattr(s, "api_port")]
    if patroni:
        jobs.append(_static("patroni", patroni))
    etcd = [(f"127.0.0.1:{s.port}", {"server": s.name}) for s in servers if s.name.startswith("etcd")]
    if etcd:
        jobs.append(_static("etcd", etcd))
    for s in servers:
        if isinstance(s, FerretDBServer):
            jobs.append(_static("mongo", [(f"127.0.0.1:{ports.MONGO_DEBUG}", {"server": s.name})],
                                metrics_path="/debug/metrics"))
    minio = [s for s in servers if isinstance(s, MinioServer)]
    if minio:
        # MinIO serves TLS (certificates of the local CA) or plain HTTP; its metrics take the bearer token
        # `mc admin prometheus generate` would make (accepted, and ignored where the metrics are public).
        tls = any(getattr(s, "tls", False) for s in minio)
        extra: dict[str, Any] = {"metrics_path": "/minio/v2/metrics/cluster",
                                 "authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
        if tls:
            from config.paths import local_ca_file

            extra |= {"scheme": "https", "tls_config": {"ca_file": str(local_ca_file())}}
        jobs.append(_static("s3", [(f"127.0.0.1:{s.port}", {"server": s.name}) for s in minio], **extra))
    collector = next((s for s in servers if isinstance(s, CollectorServer)), None)
    if collector is not None:
        addr = f"127.0.0.1:{collector.port}"
        # One node (default plan) or the HA profile's nodes: the collector reads the cluster through settings.
        if any(s.name == "opensearch" or type(s).__name__ == "OpenSearchNode" for s in servers):
            jobs.append(_static("opensearch", [(addr, {"server": "opensearch"})], metrics_path="/metrics/opensearch"))
        jobs.append(_static("storage", [(addr, {"server": "collector"})], metrics_path="/metrics/storage"))
        jobs.append(_static("pipelines", [(addr, {"server": "collector"})], metrics_path="/metrics/pipelines"))
        jobs.append(_static("collector", [(addr, {"server": "collector"})]))
    if any(isinstance(s, AlertmanagerServer) for s in servers):
        jobs.append(_static("alertmanager", [(f"127.0.0.1:{ports.ALERTMANAGER}", {"server": "alertmanager"})]))
    for job in ANNOUNCED_JOBS:
        jobs.append({"job_name": job, "file_sd_configs": [{"files": [str(targets_dir() / job / "*.json")],
                                                           "refresh_interval": "5s"}]})
    for job in jobs:
        job.setdefault("scrape_timeout", timeout)
    return jobs


def minio_token() -> str:
    """MinIO's Prometheus bearer token: a JWT signed with the root secret (what `mc admin prometheus
    generate` makes), valid a year; re-made at every start."""
    import warnings

    import jwt

    from kredete.stack.minio import ROOT_USER

    claims = {"exp": int(time.time()) + 365 * 86400, "sub": ROOT_USER, "iss": "prometheus"}
    with warnings.catch_warnings():  # MinIO's scheme: HS512 keyed by the root secret, whatever its length
        warnings.simplefilter("ignore")
        return jwt.encode(claims, local_secrets()["minio_root"], algorithm="HS512")


class PrometheusServer(MonitoringServer):
    name = "prometheus"
    port = ports.PROMETHEUS
    package = binary = "prometheus"
    job = "prometheus"
    start_timeout = 60.0

    def __init__(self, plan_servers: list[Server] | None = None) -> None:
        super().__init__()
        #: The servers of the plan this Prometheus scrapes (None: computed from the stack plan at render time).
        self.plan_servers = plan_servers

    @property
    def config_file(self) -> Path:
        return self.data_dir / "prometheus.yml"

    @property
    def rules_dir(self) -> Path:
        return self.data_dir / "rules"

    def _servers(self) -> list[Server]:
        if self.plan_servers is not None:
            return self.plan_servers
        from kredete.stack import plan

        return plan()[0]

    def render(self, settings: MonitoringSettings) -> tuple[str, dict[str, str]]:
        token_file = self.data_dir / "minio.token"
        config = {
            "global": {"scrape_interval": _seconds(settings.monitor_scrape_interval_s),
                       "evaluation_interval": _seconds(settings.monitor_evaluation_interval_s),
                       "external_labels": {"stack": "kredete-local"}},
            "rule_files": [str(self.rules_dir / "*.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports.ALERTMANAGER}"]}]}]},
            "scrape_configs": scrape_configs(self._servers(), settings, token_file),
        }
        text = ("# Rendered by kredete/stack/prometheus.py from the stack plan and the monitoring settings.\n"
                + yaml.safe_dump(config, sort_keys=False, width=120))
        return text, render_rules(settings)

    def configure(self) -> bool:
        """Write configuration and rules (checked with promtool); True when anything changed."""
        settings = load_monitoring_settings()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        for job in ANNOUNCED_JOBS:
            (targets_dir() / job).mkdir(parents=True, exist_ok=True)
        prune_stale_announcements()
        token_file = self.data_dir / "minio.token"
        token_file.write_text(minio_token())
        os.chmod(token_file, 0o600)
        config, rules = self.render(settings)
        changed = False
        self.rules_dir.mkdir(exist_ok=True)
        for stale in set(p.name for p in self.rules_dir.glob("*.yml")) - set(rules):
            (self.rules_dir / stale).unlink()
            changed = True
        for name, text in rules.items():
            path = self.rules_dir / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed = True
        if not self.config_file.exists() or self.config_file.read_text() != config:
            self.config_file.write_text(config)
            changed = True
        if changed:
            try:
                run(["promtool", "check", "config", str(self.config_file)], timeout=60)
            except StackError as exc:
                raise StackError(f"prometheus: the rendered configuration is invalid: {exc}") from exc
        return changed

    def prepare(self) -> None:
        self.configure()

    def start(self) -> None:
        changed = self.configure()
        if changed and self.pid() and self.healthy():
            self.reload()
        super().start()

    def reload(self) -> None:
        """Load the rendered configuration; return once alerts can be sent again (see `_wait_notifier`)."""
        req = urllib.request.Request(f"{self.url()}/-/reload", method="POST")  # noqa: S310 - local http
        try:
            with urllib.request.urlopen(req, timeout=30):  # noqa: S310 - http://127.0.0.1 only
                pass
        except urllib.error.HTTPError as exc:
            raise StackError(f"prometheus refused its new configuration: {exc.read()[:500]!r}") from exc
        self._wait_notifier()

    def after_start(self) -> None:
        self._wait_notifier()

    def _wait_notifier(self, timeout: float = 30.0) -> None:
        """Wait until the notifier knows the Alertmanager again.

        Each start and reload rebuilds the notifier's Alertmanager list from service discovery, which hands
        targets over at most every 5 s: for 4-5 s (measured, Prometheus 2.42) the list is empty, and an alert
        that starts firing then is dropped (`prometheus_notifications_dropped_total`) and only sent again after
        the resend delay (1 min). A caller that causes a condition right after a reload (the alert drills
        lower a threshold, then cause it) would otherwise lose its notification; so would `stack up`'s.
        """
        want = f"127.0.0.1:{ports.ALERTMANAGER}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                known = [a["url"] for a in api("/api/v1/alertmanagers", base=self.url())["activeAlertmanagers"]]
            except StackError:
                known = []
            if any(f"//{want}/" in url for url in known):
                return
            if time.monotonic() >= deadline:
                raise StackError(f"prometheus: its notifier did not find the Alertmanager at {want} within "
                                 f"{timeout:.0f}s (it knows {known or 'none'}); alerts would be dropped")
            time.sleep(0.1)

    def command(self) -> tuple[list[str], dict[str, str]]:
        settings = load_monitoring_settings()
        return [self.binary_path(), f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.data_dir / 'data'}",
                f"--storage.tsdb.retention.time={settings.monitor_retention_days}d",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                "--log.format=json", "--log.level=warn"], {}

    def healthy(self) -> bool:
        return http_ok(f"{self.url()}/-/ready")


# --- targets that announce themselves ---------------------------------------------------------------------
def _announcement(job: str, host: str, port: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host}_{port}")
    return targets_dir() / job / f"{safe}.json"


@contextlib.contextmanager
def announce_metrics(host: str, port: int, *, job: str = "mcp", labels: dict[str, str] | None = None) -> Iterator[Path]:
    """Tell the local Prometheus to scrape http://host:port/metrics while the block runs.

    The file names this process's pid: one left behind by a killed process is dropped by the next
    `stack up` or `stack status` (until then Prometheus shows the target down, as it is).
    """
    if job not in ANNOUNCED_JOBS:
        raise ValueError(f"job must be one of {ANNOUNCED_JOBS}")
    host = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else host  # noqa: S104 - what it binds, not us
    path = _announcement(job, host, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [{"targets": [f"{host}:{port}"],
             "labels": {"pid": str(os.getpid()), **(labels or {})}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)  # file_sd reads whole files only: never a half-written one
    # uvicorn re-raises the SIGTERM it handled once it has shut down: turn it into SystemExit so this
    # block's cleanup runs instead of the process dying with the file left behind.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def prune_stale_announcements() -> list[str]:
    """Remove announcements whose process is gone; returns their targets."""
    gone: list[str] = []
    for path in targets_dir().glob("*/*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
            group = json.loads(path.read_text())[0]
            if not pid_alive(int(group["labels"]["pid"])):
                path.unlink()
                gone.extend(group["targets"])
    return gone


# --- what Prometheus sees ------------------------------------------------------------------------------------
def api(path: str, *, timeout: float = 5.0, base: str | None = None) -> Any:
    """GET a Prometheus HTTP API path (`/api/v1/...`); returns `data`. Raises StackError when unreachable."""
    url = (base or f"http://127.0.0.1:{ports.PROMETHEUS}") + path
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http://127.0.0.1 only
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise StackError(f"Prometheus at {url.split('/api')[0]} does not answer ({type(exc).__name__})") from exc
    if body.get("status") != "success":
        raise StackError(f"Prometheus refused {path}: {body.get('error')}")
    return body["data"]


def scrape_targets() -> list[dict[str, Any]]:
    """Active scrape targets: job, instance, server, health ('up' / 'down' / 'unknown'), error, last scrape age."""
    rows = []
    now = time.time()
    for t in api("/api/v1/targets?state=active")["activeTargets"]:
        labels = t.get("labels", {})
        age = None
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", t.get("lastScrape") or "")
        if m and not m.group(1).startswith("0001"):
            from datetime import UTC, datetime

            age = now - (datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC).timestamp() + float(m.group(2) or 0))
        rows.append({"job": labels.get("job", t.get("scrapePool", "")), "instance": labels.get("instance", ""),
                     "server": labels.get("server", ""), "health": t.get("health", "unknown"),
                     "error": t.get("lastError", ""), "age_s": age})
    # A process that announced itself and left (its announcement is gone, or pruned above) stays among
    # Prometheus's targets until its discovery next refreshes: it is not a target of the stack any more.
    rows = [r for r in rows if not _departed(r["job"], r["instance"])]
    # An exporter that answers while its store does not (pg_up / redis_up 0) is a down store, not an up target.
    import urllib.parse

    store_up = api("/api/v1/query?query=" + urllib.parse.quote("pg_up or redis_up"))["result"]
    dead = {(m["metric"].get("job"), m["metric"].get("instance")) for m in store_up if m["value"][1] == "0"}
    for r in rows:
        if r["health"] == "up" and (r["job"], r["instance"]) in dead:
            r["health"], r["error"] = "down", "the store does not answer its exporter"
    return sorted(rows, key=lambda r: (r["job"], r["instance"]))


def _departed(job: str, instance: str) -> bool:
    """An announced target (MCP server, bench) whose announcement file no longer exists."""
    if job not in ANNOUNCED_JOBS:
        return False
    host, _, port = instance.rpartition(":")
    return not port.isdigit() or not _announcement(job, host, int(port)).exists()


def targets_ready(timeout: float = 0.0) -> bool:
    """True once Prometheus has scraped every active target at least once (waits up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(StackError):
            rows = scrape_targets()
            if rows and all(r["health"] != "unknown" for r in rows):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def running() -> bool:
    return http_ok(f"http://127.0.0.1:{ports.PROMETHEUS}/-/ready")


def print_targets(console: Any) -> bool:
    """The scrape targets table (what `stack status` shows under the servers); True when every one is up.

    A target Prometheus has not scraped yet is `unknown`, not up: the table never shows a guess.
    """
    from rich.markup import escape
    from rich.table import Table

    prune_stale_announcements()
    try:
        rows = scrape_targets()
    except StackError as exc:
        console.print(f"[red]Prometheus targets unavailable:[/] {escape(str(exc))}", highlight=False)
        return False
    table = Table(title="Prometheus scrape targets")
    for col in ("job", "instance", "server", "up", "last scrape"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", no_wrap=True, overflow="ellipsis", max_width=70)
    colour = {"up": "green", "down": "red"}
    for r in rows:
        age = f"{r['age_s']:.0f}s ago" if r["age_s"] is not None else "never"
        health = f"[{colour.get(r['health'], 'yellow')}]{r['health']}[/]"
        table.add_row(r["job"], r["instance"], r["server"], health, age, escape(r["error"]))
    console.print(table)
    return all(r["health"] == "up" for r in rows)
