"""Each alert rule against the running Prometheus, its condition caused for real, delivered to a webhook.

The drills (kredete/ops/alert_drills.py) stop the replica, pause its replay, deadlock two transactions,
sleep past the slow-statement threshold, lower the disk threshold, exhaust a pool of 2, make OpenSearch
yellow and red, and stop an outbox consumer; bench/monitoring.py times the same drills.
"""

from __future__ import annotations

import pytest

from kredete.ops.alert_drills import DRILLS, prometheus_alert, run_drill

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("name", list(DRILLS))
async def test_alert_fires_and_reaches_the_webhook(name, scratch, monitoring):
    firing = await run_drill(name, scratch, monitoring, timeout=90)
    # Delivered by Alertmanager to the test's webhook, after Prometheus fired it.
    assert firing.webhook_s >= firing.prometheus_s - 1.0
    assert firing.prometheus_s > 0


async def test_a_condition_put_back_resolves(scratch, monitoring):
    """The red index is deleted when the drill ends: the alert stops firing (nothing sticks around)."""
    from kredete.ops.alert_drills import opensearch_health, wait_until

    async with opensearch_health(scratch, "red") as drill:
        await wait_until(lambda: prometheus_alert(drill.alert, drill.labels), 60, "red alert firing")
    await wait_until(lambda: prometheus_alert(drill.alert, drill.labels) is None, 60, "red alert resolved")
