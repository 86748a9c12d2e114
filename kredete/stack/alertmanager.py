"""Alertmanager from Debian's `prometheus-alertmanager`: receives Prometheus' alerts, groups and delivers them.

Its configuration is rendered from the monitoring settings at every `stack up` (and reloaded when it
changed): one route, grouped by alert name and severity, to a webhook when `KREDETE_ALERT_WEBHOOK_URL`
is set (a pager, chat or a test's receiver); without one, alerts stay visible in Alertmanager's API and
`kredete ops status`.
"""

from __future__ import annotations

import hashlib
import urllib.request

import yaml

from config import ports
from config.monitoring import MonitoringSettings, load_monitoring_settings
from kredete.stack.exporters import MonitoringServer, http_ok


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


#: Only an alert that explains others mutes them. A store that is down (its target, or the store behind its
#: exporter) mutes the warnings of that same store, and a worse stage of one condition mutes the milder one. An
#: unrelated critical alert of the same server (failed WAL archiving, a missing backup, audit-write failures)
#: mutes nothing: a deadlock or a replication lag is news even while archiving fails.
INHIBIT_RULES = [
    {"source_matchers": ['alertname=~"TargetDown|ExporterCannotReachStore"'],
     "target_matchers": ["severity=warning"], "equal": ["server", "instance"]},
    {"source_matchers": ["alertname=DiskUsageCritical"], "target_matchers": ["alertname=DiskUsageHigh"],
     "equal": ["server", "instance", "mount"]},
    {"source_matchers": ["alertname=OpenSearchClusterRed"], "target_matchers": ["alertname=OpenSearchClusterYellow"],
     "equal": ["cluster"]},
]


def render_config(settings: MonitoringSettings) -> str:
    receiver: dict = {"name": "default"}
    if settings.alert_webhook_url:
        # Named after its URL: Alertmanager remembers what it notified per receiver name, so a new destination
        # starts with no memory. Under one name, an alert still firing when notified (or resolved without
        # the resolution reaching it, e.g. the webhook unset meanwhile) and firing again later counts as
        # already told, and is not sent again for repeat_interval.
        digest = hashlib.sha256(settings.alert_webhook_url.encode()).hexdigest()[:10]
        receiver = {"name": f"webhook-{digest}",
                    "webhook_configs": [{"url": settings.alert_webhook_url, "send_resolved": True, "max_alerts": 0}]}
    config = {
        "route": {"receiver": receiver["name"], "group_by": ["alertname", "severity"],
                  "group_wait": _duration(settings.monitor_group_wait_s),
                  "group_interval": _duration(settings.monitor_group_interval_s), "repeat_interval": "4h"},
        "receivers": [receiver],
        "inhibit_rules": INHIBIT_RULES,
    }
    return "# Rendered by kredete/stack/alertmanager.py from the monitoring settings; edits are overwritten.\n" + \
        yaml.safe_dump(config, sort_keys=False)


class AlertmanagerServer(MonitoringServer):
    name = "alertmanager"
    port = ports.ALERTMANAGER
    package = "prometheus-alertmanager"
    binary = "prometheus-alertmanager"
    job = "alertmanager"

    @property
    def config_file(self):
        return self.data_dir / "alertmanager.yml"

    def configure(self) -> bool:
        """Write the configuration; True when it changed (a running server must reload it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        text = render_config(load_monitoring_settings())
        old = self.config_file.read_text() if self.config_file.exists() else None
        if old != text:
            self.config_file.write_text(text)
        return old != text

    def prepare(self) -> None:
        self.configure()

    def start(self) -> None:
        changed = self.configure()
        pid = self.pid()
        if pid and self.healthy() and changed:
            self.reload()
        super().start()

    def reload(self) -> None:
        req = urllib.request.Request(f"{self.url()}/-/reload", method="POST")  # noqa: S310 - local http
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - http://127.0.0.1 only
            pass

    def command(self) -> tuple[list[str], dict[str, str]]:
        # No gossip cluster (one local instance): an empty cluster address turns it off.
        return [self.binary_path(), f"--config.file={self.config_file}",
                f"--storage.path={self.data_dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=", "--log.format=json", "--log.level=warn"], {}

    def healthy(self) -> bool:
        return http_ok(f"{self.url()}/-/ready")
