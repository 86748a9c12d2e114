"""Partition maintenance: the coming months are created ahead; rows stuck in a default partition are reported."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from stores.errors import InvalidData
from stores.postgres.audit import AuditRepository
from stores.postgres.models import AuditEntry
from stores.postgres.partitions import PARTITIONED, PartitionRepository


async def test_months_ahead_are_created_once(service_store):
    repo = PartitionRepository(service_store, replica_reads=False)
    first = await repo.ensure_ahead(3, today=date(2028, 1, 20))
    assert {r.table: r.created for r in first} == dict.fromkeys(PARTITIONED, 4)
    assert all(r.newest == f"{r.table}_y2028_04" for r in first)
    again = await repo.ensure_ahead(3, today=date(2028, 1, 20))
    assert all(r.created == 0 for r in again)


async def test_rows_in_the_default_partition_block_with_a_clear_error(service_store, log_store):
    repo = PartitionRepository(service_store, replica_reads=False)
    # An audit row for a month without a partition lands in audit_logs_default.
    await AuditRepository(log_store).append(AuditEntry(
        actor_subject="t", actor_role="support_agent", action="get_transaction", decision="allowed",
        occurred_at=datetime(2029, 6, 15, tzinfo=UTC)))
    with pytest.raises(InvalidData, match=r"audit_logs: 1 row\(s\) of the coming months sit in the default"):
        await repo.ensure_ahead(1, today=date(2029, 5, 1))
    # Nothing was half-created: the transaction rolled back for every table.
    async with service_store.connection() as conn:
        assert await conn.fetchval("SELECT to_regclass('transactions_y2029_05')") is None
    with pytest.raises(InvalidData, match="months_ahead"):
        await repo.ensure_ahead(61)
