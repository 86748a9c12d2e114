"""The change follower end to end, on the real credit store and OpenSearch: repository write -> outbox
event -> follower -> knowledge chunks and the structured `disputes` / `credit-reports` indexes."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from guards.redaction import redact
from retrieval.changes import FEED_NAME, FollowStats, follow
from retrieval.ingest import Ingestor
from stores.errors import StoreUnavailable
from stores.mongo.credit import ActionPlanRepository, CreditReportRepository, DisputeRepository
from stores.mongo.documents import ActionPlan, ActionStep, DisputeStatus
from stores.search import SearchStore
from stores.search.catalog import CHUNKS, CREDIT_REPORTS, DISPUTES
from tests.integration.mongo.factories import dispute, report


async def until(probe, what: str, timeout: float = 90.0):
    """Poll `probe()` until it returns something truthy (the follower is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def chunk_texts(store, source_id: str) -> list[str]:
    alias = store.index_name(CHUNKS)
    if not await store.os.indices.exists(index=alias):  # the follower has not created it yet
        return []
    await store.os.indices.refresh(index=alias)
    res = await store.os.search(index=alias, body={"size": 50, "query": {"term": {"source_id": source_id}},
                                                   "_source": ["text"], "sort": [{"chunk_index": "asc"}]})
    return [h["_source"]["text"] for h in res["hits"]["hits"]]


async def index_doc(store, name: str, doc_id: str) -> dict | None:
    alias = store.index_name(name)
    if not await store.os.indices.exists(index=alias):
        return None
    await store.os.indices.refresh(index=alias)
    res = await store.os.search(index=alias, body={"query": {"ids": {"values": [doc_id]}}})
    hits = res["hits"]["hits"]
    return hits[0]["_source"] if hits else None


@pytest.fixture(scope="module")
async def encryption(credit_db):
    from config.settings import resolve
    from stores.mongo.encryption import open_field_encryption

    enc = await open_field_encryption(credit_db, resolve().field_encryption_master_key.get_secret_value(),
                                      mode="envelope")
    yield enc
    close = getattr(enc, "close", None)
    if close is not None:
        await close()


async def checkpoint(db) -> int:
    doc = await db["cdc_checkpoints"].find_one({"_id": f"outbox:{FEED_NAME}"})
    return int(doc["seq"]) if doc else 0


async def last_seq(db) -> int:
    doc = await db["outbox_events"].find_one({}, sort=[("seq", -1)])
    return int(doc["seq"]) if doc else 0


def plan(user: str, summary: str) -> ActionPlan:
    return ActionPlan(user_id=user, horizon_months=6, summary=summary,
                      steps=[ActionStep(title="Pay the card below 30%", factor="utilization")])


async def test_writes_reach_chunks_and_structured_indexes_through_the_outbox(own_search, credit_db, encryption,
                                                                             encoder):
    reports = CreditReportRepository(credit_db, encryption=encryption)
    disputes = DisputeRepository(credit_db, encryption=encryption)
    plans = ActionPlanRepository(credit_db)
    stop = asyncio.Event()
    stats = FollowStats()
    task = asyncio.create_task(follow(Ingestor(own_search, encoder, redact=redact), credit_db, stop, stats=stats))
    try:
        user = str(uuid.uuid4())
        v1 = await reports.add_version(report(user, score=610))
        case = await disputes.create(dispute(user, v1.id, notes="The balance of the GTBank card is wrong."))
        await until(lambda: _caught_up(credit_db), "the follower applied the events")  # committed = applied
        assert (await index_doc(own_search, DISPUTES, case.id))["status"] == "opened"
        assert "Status opened" in (await chunk_texts(own_search, case.id))[0]
        v1_doc = await index_doc(own_search, CREDIT_REPORTS, v1.id)
        assert v1_doc["score"] == 610 and "Chioma" not in v1_doc["text"]

        # a dispute transition: new status and history in the chunk and in the disputes index
        await disputes.transition(case.id, DisputeStatus.SUBMITTED_TO_BUREAU, "sent to the bureau by portal")
        await until(lambda: _caught_up(credit_db), "the transition applied")
        text = (await chunk_texts(own_search, case.id))[0]
        assert "Status submitted_to_bureau" in text and "sent to the bureau by portal" in text
        assert (await index_doc(own_search, DISPUTES, case.id))["status"] == "submitted_to_bureau"

        # a new report version replaces the old one in both indexes
        v2 = await reports.add_version(report(user, score=655))
        await until(lambda: _caught_up(credit_db), "report v2 applied")
        v2_doc = await index_doc(own_search, CREDIT_REPORTS, v2.id)
        assert v2_doc["score"] == 655 and v2_doc["version"] == "2"
        assert await index_doc(own_search, CREDIT_REPORTS, v1.id) is None
        assert await chunk_texts(own_search, v1.id) == []
        assert "Score: 655" in (await chunk_texts(own_search, v2.id))[0]

        # action plans emit events too: a version becomes a chunk, the next version replaces it
        p1 = await plans.add_version(plan(user, "Lower utilisation below 30 percent within two months."))
        await until(lambda: _caught_up(credit_db), "plan v1 applied")
        assert "Lower utilisation" in (await chunk_texts(own_search, p1.id))[0]
        p2 = await plans.add_version(plan(user, "Add rent reporting to build history."))
        await until(lambda: _caught_up(credit_db), "plan v2 applied")
        assert "rent reporting" in (await chunk_texts(own_search, p2.id))[0]
        assert await chunk_texts(own_search, p1.id) == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert stats.errors == 0 and stats.events >= 6


async def _caught_up(db) -> bool:
    return await checkpoint(db) >= await last_seq(db)


class CountingStore(SearchStore):
    """The real adapter; counts the calls that found OpenSearch unreachable."""

    unavailable = 0

    async def call(self, coro):
        try:
            return await super().call(coro)
        except StoreUnavailable:
            self.unavailable += 1
            raise


async def test_an_opensearch_outage_pauses_the_follower_without_skipping_events(own_search, credit_db,
                                                                                encryption, encoder):
    url = own_search._url
    store = await CountingStore(url, prefix=f"{own_search.prefix}-outage", timeout=2.0).connect()
    plans = ActionPlanRepository(credit_db)
    disputes = DisputeRepository(credit_db, encryption=encryption)
    stop = asyncio.Event()
    stats = FollowStats()
    task = asyncio.create_task(follow(Ingestor(store, encoder, redact=redact), credit_db, stop, stats=stats,
                                      max_backoff=0.5))
    try:
        await until(lambda: store.os.indices.exists(index=store.index_name(DISPUTES)), "the follower started")
        await until(lambda: _caught_up(credit_db), "the follower caught up")
        await store.close()
        store._url = "http://127.0.0.1:9"  # nothing listens there: every call fails to connect
        user = str(uuid.uuid4())
        case = await disputes.create(dispute(user, notes="Opened while search was down."))
        p = await plans.add_version(plan(user, "Written while search was down."))
        seq = await last_seq(credit_db)

        async def retried() -> bool:
            return stats.errors >= 3
        await until(retried, "the follower retrying")
        assert not task.done()  # the outage did not end the follower
        assert await checkpoint(credit_db) < seq  # and no event was committed without being applied

        store._url = url
        await store.close()  # the next call connects again
        assert "Written while search was down." in (await until(lambda: chunk_texts(store, p.id), "plan chunk"))[0]
        assert "Opened while search was down." in (await until(lambda: chunk_texts(store, case.id), "case"))[0]
        assert (await until(lambda: index_doc(store, DISPUTES, case.id), "dispute doc"))["status"] == "opened"
        await until(lambda: _caught_up(credit_db), "the checkpoint past the outage")
    finally:
        stop.set()
        store._url = url
        await store.close()
        await asyncio.wait_for(task, 60)
        await store.os.indices.delete(index=f"{store.prefix}-*", expand_wildcards="all", ignore_unavailable=True)
        tpl = await store.os.indices.get_index_template(name=f"{store.prefix}-*", ignore=404)
        for t in tpl.get("index_templates", []):
            await store.os.indices.delete_index_template(name=t["name"])
        await store.close()
    # SearchUnavailable is the search store's StoreUnavailable (what the guards map to "temporarily unavailable")
    # After repeated failures the adapter's circuit breaker refuses without trying (CircuitOpen, also a
    # StoreUnavailable); either way the follower paused on an outage, not on a bad event.
    assert store.unavailable >= 3 and stats.last_error
    assert "SearchUnavailable" in stats.last_error or "CircuitOpen" in stats.last_error
