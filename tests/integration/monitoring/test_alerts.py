"""Each alert rule against the running Prometheus, its condition caused for real, delivered to a webhook.

The drills (kredete/ops/alert_drills.py) stop the replica, pause its replay, deadlock two transactions,
sleep past the slow-statement threshold, lower the disk threshold, exhaust a pool of 2, make OpenSearch
yellow and red, stop an outbox consumer, freeze the credit-store search follower and load fielddata into
OpenSearch's heap; bench/monitoring.py times the same drills.
"""

from __future__ import annotations

import time

import pytest

from kredete.ops.alert_drills import DRILLS, prometheus_alert, query, run_drill, wait_until

pytestmark = pytest.mark.timeout(300)

#: Drills with a test of their own below (they also check that the alert clears).
OWN_TEST = {"search_sync_lag"}


@pytest.mark.parametrize("name", [n for n in DRILLS if n not in OWN_TEST])
async def test_alert_fires_and_reaches_the_webhook(name, scratch, monitoring):
    firing = await run_drill(name, scratch, monitoring, timeout=90)
    # Delivered by Alertmanager to the test's webhook, after Prometheus fired it.
    assert firing.webhook_s >= firing.prometheus_s - 1.0
    assert firing.prometheus_s > 0


async def test_a_condition_put_back_resolves(scratch, monitoring):
    """The red index is deleted when the drill ends: the alert stops firing (nothing sticks around)."""
    from kredete.ops.alert_drills import opensearch_health

    async with opensearch_health(scratch, "red") as drill:
        await wait_until(lambda: prometheus_alert(drill.alert, drill.labels), 60, "red alert firing")
    await wait_until(lambda: prometheus_alert(drill.alert, drill.labels) is None, 60, "red alert resolved")


async def test_search_sync_lag_fires_while_the_follower_is_frozen_and_clears_when_it_resumes(scratch, monitoring):
    """The credit-store follower frozen (SIGSTOP) while disputes are written: SearchSyncLag fires and reaches
    the webhook; thawed (SIGCONT), it applies them, its lag returns to 0 and the webhook is told it resolved."""
    resumed: dict[str, float] = {}

    async def resume_and_clear(drill) -> None:
        resumed["at"] = time.time()
        await drill.extra["resume"]()
        lag = 'kredete_search_sync_lag_seconds{{database="{database}", index="{index}"}}'.format(**drill.labels)
        await wait_until(lambda: query(f"{lag} == 0"), 90, "the follower caught up (lag 0 in Prometheus)")
        await wait_until(lambda: prometheus_alert(drill.alert, drill.labels) is None, 60, "SearchSyncLag cleared")
        resumed["resolved"] = await wait_until(
            lambda: monitoring.firing(drill.alert, drill.labels, since=resumed["at"], status="resolved"), 60,
            "SearchSyncLag resolved at the webhook")

    firing = await run_drill("search_sync_lag", scratch, monitoring, timeout=90, then=resume_and_clear)
    # Not an alert left from elsewhere: it fired only once the frozen follower's lag passed the threshold.
    assert firing.prometheus_s >= firing.holds_after_s
    assert firing.webhook_s >= firing.prometheus_s - 1.0
    assert resumed["resolved"] >= resumed["at"]
