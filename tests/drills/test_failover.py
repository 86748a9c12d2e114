"""The HA profile for real, once: three etcd members and three Patroni members come up, the leader is
killed with kill -9 under a write load, the synchronous standby takes over and nothing acknowledged is lost."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.drills.conftest import USERS, Scratch, scratch_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ha() -> Iterator[Scratch]:
    # FerretDB and Redis too: the drill writes to the credit store and asks the MCP server.
    yield from scratch_stack(("mongo", "redis"), KREDETE_STACK_PROFILE="ha")


def test_failover_to_the_synchronous_standby_loses_nothing(ha):
    status = ha.run("stack", "status", "--only", "ha-pg1", "--only", "ha-pg2", "--only", "ha-pg3")
    assert status.stdout.count("Patroni") == 3
    proc = ha.run("drill", "failover", "--users", str(USERS), "--load-s", "10", check=False, timeout=900)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, text[-3000:]
    m = re.fullmatch(r"RPO=([\d.]+) RTO=([\d.]+) lost_acknowledged=(\d+)", proc.stdout.strip().splitlines()[-1])
    assert m and int(m[3]) == 0 and float(m[1]) == 0.0, proc.stdout[-500:]
    assert float(m[2]) < 60, "the new leader took writes within a minute"
    assert "(was sync_standby)" in text, "only the synchronous standby may take over"
    assert "rejoined as replica" in text or "rejoined as sync_standby" in text
    assert "db check-balances: ok" in text and "db verify-audit: ok" in text and "MCP server: answers" in text
