"""The rule files: valid for Prometheus, and their logic on synthetic series (promtool's own unit tests).

Rules whose condition can be caused on the local stack are tested for real in
tests/integration/monitoring/test_alerts.py; monitoring/rule_tests/ covers the ones fed by other
components (backups, the cache layer, the MCP server's audit and rate-limit counters).
"""

from __future__ import annotations

import subprocess

import pytest

from config.paths import REPO_ROOT
from kredete.stack.exporters import apt_binary

RULES = sorted((REPO_ROOT / "monitoring" / "rules").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    return apt_binary("promtool", "prometheus")


def test_every_rule_file_is_valid(promtool):
    out = subprocess.run([promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rule_logic_on_synthetic_series(promtool):
    tests = sorted((REPO_ROOT / "monitoring" / "rule_tests").glob("*.yml"))
    assert tests
    out = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True,
                         cwd=REPO_ROOT / "monitoring")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_severity_and_a_summary():
    import yaml

    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in ("critical", "warning"), (path.name, rule["alert"])
                    assert rule["annotations"]["summary"], (path.name, rule["alert"])
