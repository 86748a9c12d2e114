"""The session fixture of this package starts the primary and the replica (and only through session_stack,
so a session that started them stops them: see tests/integration/test_no_orphans.py)."""

from __future__ import annotations

from config.ports import POSTGRES, POSTGRES_REPLICA
from kredete.stack.base import port_open


def test_pg_stack_brings_up_primary_and_replica(pg_stack):
    from kredete.stack import status

    assert port_open(POSTGRES) and port_open(POSTGRES_REPLICA)
    rows = {r.name: r for r in status(["postgres", "postgres-replica"])}
    assert rows["postgres"].healthy and rows["postgres-replica"].healthy
