"""The audit-log index a tool reads, kept in sync by the server's background job, on a real (scratch) payments
database read as the agent role through its replica, and a real OpenSearch."""

from __future__ import annotations

import asyncio
import time
import uuid

from guards.redaction import redact
from retrieval.index_sync import DocIndexer
from retrieval.scoped_search import search_index
from retrieval.search_sync_jobs import SearchSyncJobs
from stores.postgres import PostgresStore
from stores.postgres.audit import AuditRepository
from stores.postgres.models import AuditEntry
from stores.scope import AuditScope
from tests.integration.postgres.conftest import drop_database, fresh_database

OFFICER = AuditScope("compliance_officer", "officer-1")


async def _append(store: PostgresStore, subject: str, reason: str) -> int:
    await AuditRepository(store).append(AuditEntry(actor_subject=subject, actor_role="support_agent",
                                                   action="get_dispute", decision="allowed", reason=reason))
    async with store.connection() as conn:
        return int(await conn.fetchval("SELECT max(id) FROM audit_logs"))


async def _on_replica(agent: PostgresStore, audit_id: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with agent.connection(replica=True) as conn:
            if await conn.fetchval("SELECT count(*) FROM audit_logs WHERE id = $1", audit_id):
                return
        assert time.monotonic() < deadline, "the replica never showed the audit row"
        await asyncio.sleep(0.05)


async def _found(search, text: str) -> list[dict]:
    await search.os.indices.refresh(index=search.index_name("audit-logs"))
    return await search_index(search, "audit-logs", OFFICER, text=text, k=10)


async def test_the_job_indexes_new_audit_rows_within_a_bounded_time(own_search, service_store, agent_store):
    jobs = SearchSyncJobs(own_search, agent_store, redact=redact, interval=0.2, lag=0).start()
    try:
        job = jobs.jobs["audit-logs"]
        await asyncio.wait_for(job.next_run(), 60)  # the first run builds the index, from nothing
        assert await _found(own_search, "anything") == []
        subject = f"agent-{uuid.uuid4().hex[:10]}"
        await _append(service_store, subject, "chargeback question, caller gave 08031234567")
        t0 = time.monotonic()
        while not (hits := await _found(own_search, subject)):
            assert time.monotonic() - t0 < 30, "a new audit row never became searchable"
            await asyncio.sleep(0.2)
        assert [h["actor_subject"] for h in hits] == [subject]
        assert "08031234567" not in hits[0]["reason"]  # redacted before it was indexed
        assert job.failures == 0
    finally:
        await jobs.stop()
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("search-job-"))


async def test_no_job_when_switched_off(own_search, agent_store):
    assert SearchSyncJobs(own_search, agent_store, redact=redact, interval=0, lag=0).jobs == {}


async def test_an_audit_log_recreated_under_the_index_is_indexed_from_its_start(pg_template, own_search):
    """A fresh dataset under an index built from an older one (a recreated database keeps the index and its
    checkpoint): the next sync rebuilds the index from the new rows instead of skipping them."""
    first, second = fresh_database(pg_template), fresh_database(pg_template)
    stores = [await PostgresStore(u, r).connect() for u, r in (
        (first.service, None), (first.agent, first.agent_replica), (second.service, None),
        (second.agent, second.agent_replica))]
    old_service, old_agent, new_service, new_agent = stores
    try:
        indexer = DocIndexer(own_search, "audit-logs", redact=redact, lag=0)
        for i in range(3):
            last = await _append(old_service, "agent-old", f"old dataset row {i}")
        await _on_replica(old_agent, last)
        assert (await indexer.sync(postgres=old_agent))["checkpoint"] == str(last)

        fresh = await _append(new_service, "agent-new", "new dataset, first row")
        assert fresh < last
        await _on_replica(new_agent, fresh)
        out = await indexer.sync(postgres=new_agent)
        assert out.get("rebuilt") and out["checkpoint"] == str(fresh)
        assert [h["actor_subject"] for h in await _found(own_search, "dataset")] == ["agent-new"]

        more = await _append(new_service, "agent-new", "new dataset, second row")
        await _on_replica(new_agent, more)
        out = await indexer.sync(postgres=new_agent)
        assert not out.get("rebuilt") and out["indexed"] == 1 and out["checkpoint"] == str(more)
    finally:
        for store in stores:
            await store.close()
        for urls in (first, second):
            drop_database(urls.admin, urls.db)
