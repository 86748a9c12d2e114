"""Incremental indexing from the credit store's change events (outbox or change stream).

One follower keeps every index fed by the credit store: the knowledge chunks of credit reports,
disputes (and their letters) and action plans, and the structured `credit-reports` and `disputes`
indexes. Handlers are idempotent (events are delivered at least once): an upsert re-reads the
current document and re-indexes it (unchanged content is not re-embedded); a delete, a document
that no longer exists, or a version a newer one supersedes, removes it.

A store error while applying a batch (OpenSearch down, say) does not end the follower and skips no
event: the batch is retried with a bounded backoff and the checkpoint only moves once it applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from retrieval.converters import action_plan_doc, credit_report_doc
from retrieval.documents import MalformedDocument, SourceDoc
from retrieval.index_sync import DocIndexer
from retrieval.ingest import Ingestor, IngestReport, SkipRecord
from retrieval.sources import DisputeSource
from stores.errors import InvalidData, StoreError
from stores.mongo.scans import CreditStoreScan
from stores.search.catalog import CREDIT_REPORTS, DISPUTES

log = logging.getLogger("kredete.retrieval.changes")

FEED_NAME = "search-indexer"
#: collection (event topic) -> doc_type of its documents in the knowledge index
TOPIC_DOC_TYPE = {"credit_reports": "credit_report", "dispute_cases": "dispute", "action_plans": "action_plan"}
#: collection -> the structured search index fed from the same events
TOPIC_INDEX = {"credit_reports": CREDIT_REPORTS, "dispute_cases": DISPUTES}
#: versioned collections: a document another one `supersedes` is no longer indexed
VERSIONED = ("credit_reports", "action_plans")
PRUNE_EVERY_S = 600.0


@dataclass
class FollowStats:
    """What a follower did so far (for logs, the CLI and tests)."""

    batches: int = 0
    events: int = 0
    errors: int = 0
    last_error: str | None = None


class _Stopped(Exception):
    """Stop was requested while a batch could not be applied: leave without committing it."""


def doc_indexers(ingestor: Ingestor) -> dict[str, DocIndexer]:
    """The structured indexes a follower keeps, on the ingestor's search store."""
    return {name: DocIndexer(ingestor.search, name, redact=ingestor.redact) for name in TOPIC_INDEX.values()}


async def apply_events(ingestor: Ingestor, db: Any, events: Iterable[Any], *,
                       indexers: Mapping[str, DocIndexer] | None = None) -> IngestReport:
    """Bring the indexes in line with the documents named by `events` (objects with topic/op/document_id)."""
    report = IngestReport(source="changes")
    skips: list[SkipRecord] = []
    by_topic: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.topic in TOPIC_DOC_TYPE:
            by_topic[ev.topic].add(str(ev.document_id))
    docs: list[SourceDoc] = []
    gone: list[str] = []
    gone_disputes: list[str] = []
    index_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    index_gone: dict[str, list[str]] = defaultdict(list)
    scan = CreditStoreScan(db)
    for topic, ids in by_topic.items():
        wanted = sorted(ids)
        rows = await scan.by_ids(topic, wanted)
        superseded: set[str] = set()
        if topic in VERSIONED:  # an event re-delivered after a newer version was written
            superseded = await scan.superseded_among(topic, wanted)
        disputes = DisputeSource(db) if topic == "dispute_cases" else None
        if disputes is not None:
            await disputes.names_for({str(r.get("report_id")) for r in rows.values()})
        target = TOPIC_INDEX.get(topic)
        for doc_id in wanted:
            report.records += 1
            raw = rows.get(doc_id)
            if raw is None or doc_id in superseded:
                gone.append(f"{TOPIC_DOC_TYPE[topic]}:{doc_id}")
                if disputes is not None:
                    gone_disputes.append(doc_id)
                if target:
                    index_gone[target].append(doc_id)
                continue
            if target:
                index_rows[target].append(raw)
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
    for name, indexer in (indexers or {}).items():
        if not (index_rows[name] or index_gone[name]):
            continue
        _, bad, _ = await indexer.apply_changes(index_rows[name], index_gone[name])
        for reason in bad:
            source_id, _, why = reason.partition(": ")
            skips.append(report.skip(f"changes:{name}", source_id, why or reason))
    await ingestor.state.record_skips(skips)
    return report


async def follow(ingestor: Ingestor, db: Any, stop: asyncio.Event, *, mode: str = "auto",
                 indexers: Mapping[str, DocIndexer] | None = None, stats: FollowStats | None = None,
                 max_backoff: float = 30.0) -> FollowStats:
    """Consume change events until `stop` is set, checkpointing as the feed defines.

    `indexers` default to the `credit-reports` and `disputes` indexes (`{}` keeps only the chunks).
    """
    from stores.mongo.cdc import ChangeStreamSource, open_feed

    stats = stats if stats is not None else FollowStats()
    indexers = doc_indexers(ingestor) if indexers is None else indexers

    async def retried(what: str, step: Any) -> None:
        """Run `step()` until it succeeds; a store error waits (bounded exponential backoff) and retries."""
        delay = min(0.5, max_backoff)
        while True:
            try:
                await step()
                return
            except InvalidData:
                raise  # a request the stores refuse will not succeed by retrying
            except StoreError as exc:
                stats.errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("search follower: %s failed (%s); retrying in %.1fs", what, stats.last_error, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    raise _Stopped from exc
                delay = min(max_backoff, delay * 2)

    async def ensure() -> None:
        await ingestor.ensure_indexes()
        for indexer in indexers.values():
            await indexer.ensure()

    last_prune = time.monotonic()

    async def apply(events: list[Any]) -> None:
        nonlocal last_prune
        await retried(f"a batch of {len(events)} events",
                      lambda: apply_events(ingestor, db, events, indexers=indexers))
        stats.batches += 1
        stats.events += len(events)
        if time.monotonic() - last_prune > PRUNE_EVERY_S:  # deletes leave tombstones; keep them bounded
            last_prune = time.monotonic()
            try:
                await ingestor.indexes.prune_tombstones(ingestor.spec)
                for indexer in indexers.values():
                    await indexer.manager.prune_tombstones(indexer.spec)
            except StoreError as exc:  # pruning is housekeeping: the next round tries again
                log.warning("search follower: pruning tombstones failed (%s)", exc)

    try:
        await retried("creating the indexes", ensure)
        feed = await open_feed(db, FEED_NAME, mode=mode)  # type: ignore[arg-type]
        if isinstance(feed, ChangeStreamSource):
            async for event, token in feed.events():
                await apply([event])
                await feed.commit(token)
                if stop.is_set():
                    break
        else:
            # The batch is committed only after `apply` returns; `_Stopped` leaves it for the next run.
            await feed.run(apply, stop=stop)
    except _Stopped:
        pass
    return stats
