"""The MCP server runtime runs the credit store's retention and outbox-reconciliation jobs itself."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agent_tools.runtime import AgentRuntime
from config.settings import Settings
from stores.mongo.cdc import dispute_event_id
from stores.mongo.credit import DisputeRepository
from stores.mongo.documents import new_id, now
from tests.integration.mongo.factories import dispute, uid


async def test_runtime_started_jobs_delete_expired_logs_and_reemit_lost_events(db, mongo_url, encryption):
    settings = Settings(mongo_url=mongo_url, mongo_db=db.name, log_retention_days=3,
                        mongo_retention_interval_s=0.05, outbox_reconcile_interval_s=0.05)
    rt = await AgentRuntime(settings).start()
    try:
        jobs = rt.mongo_jobs.jobs
        assert set(jobs) == {"retention", "reconcile_outbox"}
        assert rt.ai_logger.retention == timedelta(days=3)  # the setting, not an environment lookup

        user = uid()
        expired, live = new_id(), new_id()
        for _id, expires in ((expired, now() - timedelta(seconds=1)), (live, now() + timedelta(days=1))):
            await db.llm_conversations.insert_one({"_id": _id, "user_id": user, "conversation_id": "c",
                                                   "created_at": now(), "expires_at": expires})
        d = await DisputeRepository(db, encryption=encryption).create(dispute(user))
        lost = dispute_event_id(d.id, 1)
        await db.outbox_events.delete_one({"_id": lost})  # a crash between the write and its outbox event

        # A run of each that started after the setup (an earlier one may already have done the work).
        await asyncio.wait_for(asyncio.gather(jobs["retention"].next_run(), jobs["reconcile_outbox"].next_run()), 60)
        assert all(j.finished >= 1 and j.failures == 0 for j in jobs.values())
        assert await db.llm_conversations.count_documents({"_id": expired}) == 0
        assert await db.llm_conversations.count_documents({"_id": live}) == 1
        assert await db.outbox_events.count_documents({"_id": lost}) == 1
    finally:
        await rt.close()
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("mongo-job-"))


async def test_jobs_can_be_switched_off(db, mongo_url):
    settings = Settings(mongo_url=mongo_url, mongo_db=db.name, mongo_retention_interval_s=0,
                        outbox_reconcile_interval_s=0)
    rt = await AgentRuntime(settings).start()
    try:
        assert rt.mongo_jobs.jobs == {}
    finally:
        await rt.close()
