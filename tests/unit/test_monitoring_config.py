"""Monitoring configuration: thresholds refused by name, rules rendered for a profile, targets from a plan."""

from __future__ import annotations

import pytest
import yaml

from config.errors import ConfigError
from config.monitoring import load_monitoring_settings


def test_defaults_load(monkeypatch):
    s = load_monitoring_settings()
    assert s.thresholds()["disk_used_ratio"] == 0.85
    assert s.capacity_growth_monthly == 0.15 and s.capacity_limit_opensearch_gb == 500
    assert s.capacity_limit_redis_gb == 26


@pytest.mark.parametrize(("variable", "value"), [
    ("KREDETE_ALERT_DISK_USED_RATIO", "1.5"),
    ("KREDETE_ALERT_SLOW_QUERY_S", "-1"),
    ("KREDETE_ALERT_REPLICATION_LAG_BYTES", "lots"),
    ("KREDETE_MONITOR_SCRAPE_INTERVAL_S", "0"),
    ("KREDETE_ALERT_WEBHOOK_URL", "ftp://x"),
])
def test_a_bad_value_is_refused_by_its_variable_name(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_monitoring_settings()
    assert variable in str(err.value)


def test_thresholds_that_contradict_each_other_are_refused(monkeypatch):
    monkeypatch.setenv("KREDETE_ALERT_DISK_USED_RATIO", "0.9")
    monkeypatch.setenv("KREDETE_ALERT_DISK_CRITICAL_RATIO", "0.8")
    with pytest.raises(ConfigError, match="KREDETE_ALERT_DISK_CRITICAL_RATIO"):
        load_monitoring_settings()


def test_rules_keep_their_for_unless_a_profile_caps_it(monkeypatch):
    from kredete.stack.prometheus import render_rules

    plain = yaml.safe_load(render_rules(load_monitoring_settings())["storage.yml"])
    assert {r["for"] for g in plain["groups"] for r in g["rules"]} == {"5m", "1m"}
    monkeypatch.setenv("KREDETE_MONITOR_FOR_CAP_S", "2")
    capped = yaml.safe_load(render_rules(load_monitoring_settings())["storage.yml"])
    assert {r["for"] for g in capped["groups"] for r in g["rules"]} == {"2000ms"}


def test_thresholds_are_recorded_for_the_rules(monkeypatch):
    from kredete.stack.prometheus import render_rules

    monkeypatch.setenv("KREDETE_ALERT_DISK_USED_RATIO", "0.5")
    doc = yaml.safe_load(render_rules(load_monitoring_settings())["_thresholds.yml"])
    rules = {r["labels"]["threshold"]: r["expr"] for r in doc["groups"][0]["rules"]}
    assert rules["disk_used_ratio"] == "vector(0.5)"
    # Every threshold a rule compares against is recorded, and every recorded one is used by a rule.
    import re

    from config.paths import REPO_ROOT

    used = {m for path in (REPO_ROOT / "monitoring" / "rules").glob("*.yml")
            for m in re.findall(r'threshold="([a-z0-9_]+)"', path.read_text())}
    assert used == set(rules)


def test_scrape_targets_follow_the_plan(tmp_path):
    """Two replicas in the plan: three postgres exporters scraped; every Redis node through one exporter."""
    from config.monitoring import MonitoringSettings
    from kredete.stack.ferretdb import FerretDBServer
    from kredete.stack.monitoring import monitoring_servers
    from kredete.stack.postgres import PostgresPrimary, PostgresReplica
    from kredete.stack.prometheus import scrape_configs
    from kredete.stack.redis import RedisServer

    primary = PostgresPrimary()
    second = PostgresReplica(primary)
    second.name = "postgres-replica-2"
    data = [primary, PostgresReplica(primary), second, RedisServer(), FerretDBServer()]
    jobs = {j["job_name"]: j for j in scrape_configs([*data, *monitoring_servers(data)], MonitoringSettings(),
                                                     tmp_path / "token")}
    pg = [(c["targets"][0], c["labels"]) for c in jobs["postgres"]["static_configs"]]
    assert [labels["server"] for _t, labels in pg] == ["postgres", "postgres-replica", "postgres-replica-2"]
    assert [labels["role"] for _t, labels in pg] == ["primary", "replica", "replica"]
    assert len({t for t, _l in pg}) == 3
    assert jobs["redis"]["metrics_path"] == "/scrape"
    assert jobs["mongo"]["metrics_path"] == "/debug/metrics"
    assert {"mcp", "app", "storage", "pipelines"} <= set(jobs)
    assert "opensearch" not in jobs  # not in this plan


def test_every_node_of_a_redis_cluster_is_scraped(tmp_path):
    from config.monitoring import MonitoringSettings
    from kredete.stack.monitoring import monitoring_servers
    from kredete.stack.prometheus import scrape_configs
    from kredete.stack.redis import RedisClusterServer

    cluster = RedisClusterServer(node_ports=(7001, 7002, 7003, 7004, 7005, 7006))
    jobs = {j["job_name"]: j for j in scrape_configs(monitoring_servers([cluster]), MonitoringSettings(),
                                                     tmp_path / "token")}
    targets = [c["targets"][0] for c in jobs["redis"]["static_configs"]]
    assert targets == [f"redis://127.0.0.1:{p}" for p in range(7001, 7007)]


def test_alertmanager_posts_to_the_webhook_only_when_one_is_set(monkeypatch):
    from kredete.stack.alertmanager import render_config

    plain = yaml.safe_load(render_config(load_monitoring_settings()))
    assert "webhook_configs" not in plain["receivers"][0]
    monkeypatch.setenv("KREDETE_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/alerts")
    hooked = yaml.safe_load(render_config(load_monitoring_settings()))
    assert hooked["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/alerts"
    assert hooked["route"]["receiver"] == hooked["receivers"][0]["name"]
    # Another destination is another receiver: Alertmanager's memory of what it told the old one does not
    # hold back an alert the new one has never seen.
    monkeypatch.setenv("KREDETE_ALERT_WEBHOOK_URL", "http://127.0.0.1:10/alerts")
    other = yaml.safe_load(render_config(load_monitoring_settings()))
    assert other["receivers"][0]["name"] != hooked["receivers"][0]["name"]


@pytest.fixture(autouse=True)
def _no_monitoring_environment(monkeypatch):
    """Defaults only: another test of the session may have applied a monitoring profile to the environment."""
    import os

    from config.monitoring import MonitoringSettings

    for name in MonitoringSettings.model_fields:
        monkeypatch.delenv(f"KREDETE_{name.upper()}", raising=False)
    assert not any(k.startswith(("KREDETE_ALERT_", "KREDETE_MONITOR_")) for k in os.environ)


def test_a_grace_period_is_never_capped(monkeypatch):
    """BackupMissing's 26 h is a new stanza's time to make its first backup: capped for the drills it fired on
    every fresh stack, and its critical inhibition muted the warnings of the same instance."""
    from kredete.stack.prometheus import render_rules

    monkeypatch.setenv("KREDETE_MONITOR_FOR_CAP_S", "2")
    doc = yaml.safe_load(render_rules(load_monitoring_settings())["backups.yml"])
    fors = {r["alert"]: r["for"] for g in doc["groups"] for r in g["rules"]}
    assert fors == {"BackupTooOld": "2000ms", "BackupMissing": "26h"}


def _inhibited(source: dict[str, str], target: dict[str, str]) -> bool:
    """Alertmanager's inhibition for the rendered rules (matchers `name=value` and `name=~"re"`)."""
    import re

    from kredete.stack.alertmanager import render_config

    def matches(matchers: list[str], labels: dict[str, str]) -> bool:
        for m in matchers:
            name, op, value = re.fullmatch(r'(\w+)(=~|=)"?(.*?)"?', m).groups()
            got = labels.get(name, "")
            if not (re.fullmatch(value, got) if op == "=~" else got == value):
                return False
        return True

    rules = yaml.safe_load(render_config(load_monitoring_settings()))["inhibit_rules"]
    return any(matches(r["source_matchers"], source) and matches(r["target_matchers"], target)
               and all(source.get(k, "") == target.get(k, "") for k in r["equal"]) for r in rules)


def test_only_an_alert_that_explains_others_mutes_them():
    """A store down mutes that store's warnings; failing WAL archiving (critical, same server) must not mute a
    deadlock or a slow statement on it (it did, and the drills of those alerts never reached the webhook)."""
    pg = {"server": "postgres", "instance": "127.0.0.1:9187"}
    deadlock = {**pg, "alertname": "PostgresDeadlocks", "severity": "warning", "datname": "kredete"}
    assert _inhibited({**pg, "alertname": "TargetDown", "severity": "critical"}, deadlock)
    assert _inhibited({**pg, "alertname": "ExporterCannotReachStore", "severity": "critical"}, deadlock)
    for cause in ("WalArchiveFailing", "BackupMissing", "BackupTooOld", "AuditWriteFailures"):
        assert not _inhibited({**pg, "alertname": cause, "severity": "critical"}, deadlock), cause
    assert not _inhibited({"server": "redis", "instance": "x", "alertname": "TargetDown", "severity": "critical"},
                          deadlock)
    disk = {"server": "postgres", "instance": "i", "mount": "/"}
    assert _inhibited({**disk, "alertname": "DiskUsageCritical", "severity": "critical"},
                      {**disk, "alertname": "DiskUsageHigh", "severity": "warning"})
    assert _inhibited({"cluster": "c", "alertname": "OpenSearchClusterRed", "severity": "critical"},
                      {"cluster": "c", "alertname": "OpenSearchClusterYellow", "severity": "warning"})
