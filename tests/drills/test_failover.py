"""The HA profile for real, once: three etcd members and three Patroni members come up, the leader is
killed with kill -9 under a write load, the synchronous standby takes over and nothing acknowledged is lost;
the cluster is backed up with pgBackRest and the new leader archives its WAL;
PatroniLeaderChanged reaches a webhook through the stack's Prometheus and Alertmanager."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from kredete.ops.alert_drills import TEST_PROFILE, WebhookReceiver
from tests.drills.conftest import USERS, Scratch, scratch_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def ha(webhook) -> Iterator[Scratch]:
    # FerretDB and Redis too: the drill writes to the credit store and asks the MCP server. Prometheus and
    # Alertmanager (the drills' fast profile, posting to the test's webhook): the leader change must be alerted.
    # S3: the Patroni members archive their WAL to the pgBackRest repository in its backups bucket.
    yield from scratch_stack(("mongo", "redis", "prometheus", "alertmanager", "s3"), KREDETE_STACK_PROFILE="ha",
                             **TEST_PROFILE, KREDETE_ALERT_WEBHOOK_URL=webhook.url)


def test_failover_to_the_synchronous_standby_loses_nothing(ha, webhook):
    status = ha.run("stack", "status", "--only", "ha-pg1", "--only", "ha-pg2", "--only", "ha-pg3")
    assert status.stdout.count("Patroni") == 3
    # the Patroni cluster is backed up like the default primary: pgBackRest finds the leader among the members
    full = ha.run("backup", "run", "--type", "full", check=False, timeout=600)
    assert full.returncode == 0, (full.stdout + full.stderr)[-2000:]
    proc = ha.run("drill", "failover", "--users", str(USERS), "--load-s", "5", check=False, timeout=900)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, text[-3000:]
    m = re.fullmatch(r"RPO=([\d.]+) RTO=([\d.]+) lost_acknowledged=(\d+)", proc.stdout.strip().splitlines()[-1])
    assert m and int(m[3]) == 0 and float(m[1]) == 0.0, proc.stdout[-500:]
    assert float(m[2]) < 60, "the new leader took writes within a minute"
    assert "(was sync_standby)" in text, "only the synchronous standby may take over"
    assert "rejoined as replica" in text or "rejoined as sync_standby" in text
    assert "db check-balances: ok" in text and "db verify-audit: ok" in text and "MCP server: answers" in text
    # the new leader archives (a WAL switch pushed end to end on its new timeline), and the backup verifies
    verified = ha.run("backup", "verify", check=False, timeout=600)
    assert verified.returncode == 0, (verified.stdout + verified.stderr)[-2000:]
    listed = json.loads(ha.run("backup", "list", "--json").stdout)
    assert listed["status"]["archive"]["failing"] is False, listed["status"]["archive"]
    newest = max(a["max"] for a in listed["archive"] if a.get("max"))
    assert int(newest[:8], 16) >= 2, f"no WAL of the new leader's timeline archived: {listed['archive']}"
    # Prometheus saw the new timeline and Alertmanager told the webhook (monitoring/rules/patroni.yml).
    deadline = time.monotonic() + 90
    while not webhook.firing("PatroniLeaderChanged", {"scope": "kredete-ha"}):
        assert time.monotonic() < deadline, "PatroniLeaderChanged never reached the webhook"
        time.sleep(0.5)
