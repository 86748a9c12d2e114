"""Incremental indexing from the credit store's change events (outbox or change stream).

Handlers are idempotent (events are delivered at least once): an upsert re-reads the current
document and re-indexes it (unchanged content is not re-embedded); a delete, or a document that no
longer exists, removes its chunks.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from retrieval.converters import action_plan_doc, credit_report_doc
from retrieval.documents import MalformedDocument, SourceDoc
from retrieval.ingest import Ingestor, IngestReport, SkipRecord
from retrieval.sources import DisputeSource

FEED_NAME = "search-indexer"
#: collection (event topic) -> doc_type of its documents in the knowledge index
TOPIC_DOC_TYPE = {"credit_reports": "credit_report", "dispute_cases": "dispute", "action_plans": "action_plan"}


async def apply_events(ingestor: Ingestor, db: Any, events: Iterable[Any]) -> IngestReport:
    """Bring the index in line with the documents named by `events` (objects with topic/op/document_id)."""
    report = IngestReport(source="changes")
    skips: list[SkipRecord] = []
    by_topic: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.topic in TOPIC_DOC_TYPE:
            by_topic[ev.topic].add(str(ev.document_id))
    docs: list[SourceDoc] = []
    gone: list[str] = []
    gone_disputes: list[str] = []
    for topic, ids in by_topic.items():
        rows = {str(r["_id"]): r async for r in db[topic].find({"_id": {"$in": sorted(ids)}})}
        disputes = DisputeSource(db) if topic == "dispute_cases" else None
        if disputes is not None:
            await disputes.names_for({str(r.get("report_id")) for r in rows.values()})
        for doc_id in sorted(ids):
            report.records += 1
            raw = rows.get(doc_id)
            if raw is None:
                gone.append(f"{TOPIC_DOC_TYPE[topic]}:{doc_id}")
                if disputes is not None:
                    gone_disputes.append(doc_id)
                continue
            try:
                if disputes is not None:
                    docs.extend(disputes.convert(raw))
                elif topic == "credit_reports":
                    docs.append(credit_report_doc(raw))
                else:
                    docs.append(action_plan_doc(raw))
            except MalformedDocument as exc:
                skips.append(report.skip("changes", exc.source_id, exc.reason))
    report.docs_deleted = await ingestor.delete_sources(gone, letter_prefixes=gone_disputes)
    await ingestor.index_docs(docs, report, skips)
    await ingestor._record_skips(skips)
    return report


async def follow(ingestor: Ingestor, db: Any, stop: asyncio.Event, *, mode: str = "auto") -> None:
    """Consume change events until `stop` is set, checkpointing as the feed defines."""
    from stores.mongo.cdc import ChangeStreamSource, open_feed

    await ingestor.ensure_indexes()
    feed = await open_feed(db, FEED_NAME, mode=mode)  # type: ignore[arg-type]
    if isinstance(feed, ChangeStreamSource):
        async for event, token in feed.events():
            await apply_events(ingestor, db, [event])
            await feed.commit(token)
            if stop.is_set():
                return
    else:
        async def handle(events: list[Any]) -> None:
            await apply_events(ingestor, db, events)

        await feed.run(handle, stop=stop)
