"""Monitoring tests: the local stack with its Prometheus switched to the drills' fast profile.

The profile (1 s scrapes and evaluations, every `for:` capped at 2 s, thresholds a drill can reach, a
webhook receiver of the test as Alertmanager's target) is applied by reloading the running Prometheus and
Alertmanager, and taken back at the end of the session.
"""

from __future__ import annotations

import pytest

from kredete.ops.alert_drills import TEST_PROFILE, Scratch, WebhookReceiver, profile


@pytest.fixture(scope="package")
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture(scope="package")
def monitoring(stack, receiver):
    """Every server up, Prometheus on the fast profile, every target scraped once under it."""
    from kredete.stack.prometheus import targets_ready

    with profile({**TEST_PROFILE, "KREDETE_ALERT_WEBHOOK_URL": receiver.url}):
        assert targets_ready(timeout=60), "Prometheus did not scrape every target within 60 s"
        yield receiver


@pytest.fixture(scope="package")
async def scratch(monitoring):
    s = Scratch()
    s.warm_search_sync()  # its follower loads an embedding model: in the background, during the other drills
    yield s
    await s.close()
