"""Keeping a structured search index in line with its source: sync from a checkpoint, apply changes, rebuild.

Postgres-fed indexes resume from the high-water mark checkpointed in the ingest-state index (the feed
re-reads a lag window behind it); Mongo-fed ones are scanned whole. Every write carries the source's
version, so re-reads are idempotent and an alias-swap `rebuild()` loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from retrieval.documents import MalformedDocument
from retrieval.errors import InvalidQuery
from retrieval.feeds import FEEDS, Feed
from retrieval.redactor import RedactionEngine, text_redactor
from stores.mongo.scans import CreditStoreScan
from stores.postgres.keyset_feed import DEFAULT_LAG, KeysetFeedRepository
from stores.postgres.pool import PostgresStore
from stores.search.catalog import CREDIT_REPORTS, static_specs
from stores.search.client import SearchStore
from stores.search.documents import SearchIndex, VersionedDoc
from stores.search.indexes import IndexManager, IndexSpec, RebuildReport
from stores.search.ingest_state import IngestState

Row = dict[str, Any]
log = logging.getLogger("kredete.retrieval.index_sync")


class DocIndexer:
    """Writes one structured index family from its source's rows; malformed rows are counted and skipped.

    `redact` is the PII redaction engine (`guards.redaction.redact`) free-text fields go through.
    """

    def __init__(self, search: SearchStore, name: str, *, redact: RedactionEngine,
                 lag: timedelta | float = DEFAULT_LAG) -> None:
        if name not in FEEDS:
            raise InvalidQuery(f"unknown index {name!r}; known: {list(FEEDS)}")
        self.search = search
        self.name = name
        self.feed: Feed = FEEDS[name]
        self.spec: IndexSpec = static_specs()[name]
        self.redact = redact
        self.redactor = text_redactor(redact)
        self.manager = IndexManager(search)
        self.index = SearchIndex(search, name)
        self.alias = self.index.alias
        self.state = IngestState(search)
        self.lag = lag if isinstance(lag, timedelta) else timedelta(seconds=float(lag))

    async def ensure(self) -> None:
        await self.manager.ensure(self.spec)
        await self.state.ensure()

    async def index_rows(self, rows: Iterable[Row], *, index: str | None = None,
                         read_at: datetime | None = None) -> tuple[int, list[str]]:
        """Bulk-index rows into `index` (default: the alias), `indexed_at` = when they were read.
        Returns (indexed, skip reasons); a row the index already holds newer is not a skip."""
        stamp = (read_at or datetime.now(UTC)).isoformat()
        # Redaction is CPU work: off the event loop, so a server running this sync keeps answering meanwhile.
        docs, skipped = await asyncio.to_thread(self._documents, list(rows), stamp)
        result = await self.index.write(docs, index=index)
        skipped += [f"{doc_id}: {reason}" for doc_id, reason in result.failed.items()]
        return result.written, skipped

    def _documents(self, rows: list[Row], stamp: str) -> tuple[list[VersionedDoc], list[str]]:
        docs: list[VersionedDoc] = []
        skipped: list[str] = []
        for row in rows:
            try:
                doc = self.feed.to_doc(row, self.redactor)
                version = self.feed.version(row)
            except (KeyError, TypeError, ValueError) as exc:
                rid = str(row.get("id", row.get("_id", "?")))
                skipped.append(f"{rid}: {exc.reason if isinstance(exc, MalformedDocument) else repr(exc)}"[:300])
                continue
            doc = {k: v for k, v in doc.items() if v is not None}
            doc["indexed_at"] = stamp
            docs.append(VersionedDoc(doc[self.feed.id_field], version, doc))
        return docs, skipped

    async def delete_ids(self, ids: Iterable[str]) -> int:
        """Remove documents by id (through the alias, tombstoned for a rebuild running meanwhile)."""
        ids = sorted({str(i) for i in ids})
        if not ids:
            return 0
        return await self.manager.delete_where(self.spec, {"ids": {"values": ids}}, refresh=True)

    async def apply_changes(self, rows: list[Row], gone: Iterable[str] = ()) -> tuple[int, list[str], int]:
        """Index changed source documents and remove vanished ones (a new credit-report version also
        removes the version it supersedes). Returns (indexed, skip reasons, deleted)."""
        gone = {str(g) for g in gone}
        if self.name == CREDIT_REPORTS:
            gone |= {str(r["supersedes"]) for r in rows if r.get("supersedes")}
        n, skipped = await self.index_rows(rows) if rows else (0, [])
        return n, skipped, await self.delete_ids(gone)

    async def sync(self, *, postgres: PostgresStore | None = None, mongo_db: Any = None, full: bool = False,
                   index: str | None = None, batch: int = 1000) -> dict[str, Any]:
        """Index rows changed since the last checkpoint (all rows with `full`).

        With `index` (a rebuild filling a new generation) every row is written there and no checkpoint moves.
        """
        await self.ensure()
        source = f"index-{self.name}"
        ckpt = None if full else await self.state.checkpoint(source)
        high = ckpt.get("last_key") if ckpt else None
        total, skipped = 0, []
        if self.feed.kind == "postgres":
            if postgres is None:
                raise InvalidQuery(f"{self.name} is fed from Postgres; connect it")
            feed = KeysetFeedRepository(postgres, self.feed.table, lag=self.lag)
            # An append-only source without a row at the mark was recreated (a fresh dataset): a sync would skip
            # its rows until they pass the old mark, and the index would keep the old rows. Start it over.
            if high is not None and self.feed.table.cursor == "id" and index is None and not await feed.reaches(high):
                log.warning("%s: the source has no row at the checkpoint %s any more; rebuilding", self.name, high)
                report = await self.rebuild(postgres=postgres)
                return {"index": self.name, "indexed": report.new_count, "skipped": 0, "skip_reasons": [],
                        "checkpoint": (await self.state.checkpoint(source) or {}).get("last_key"), "rebuilt": True}
            async for page in feed.pages(high, batch=batch):
                n, s = await self.index_rows(page.rows, index=index, read_at=page.read_at)
                total, skipped = total + n, skipped + s
                high = feed.later(high, page.cursor)
                if index is None:
                    await self.state.save_checkpoint(source, high)
        else:
            if mongo_db is None:
                raise InvalidQuery(f"{self.name} is fed from Mongo; connect it")
            scan = CreditStoreScan(mongo_db)
            exclude = await scan.superseded(self.feed.collection) if self.name == CREDIT_REPORTS else set()
            pages = scan.pages(self.feed.collection, batch=batch, exclude=sorted(exclude))
            while True:
                read_at = datetime.now(UTC)
                rows = await anext(pages, None)
                if rows is None:
                    break
                n, s = await self.index_rows(rows, index=index, read_at=read_at)
                total, skipped = total + n, skipped + s
        if index is None:
            await self.manager.prune_tombstones(self.spec)
        return {"index": self.name, "indexed": total, "skipped": len(skipped), "skip_reasons": skipped[:20],
                "checkpoint": high}

    async def rebuild(self, *, postgres: PostgresStore | None = None, mongo_db: Any = None) -> RebuildReport:
        """Reload the whole index from its source into a new generation, then swap the alias; a Postgres-fed
        index's checkpoint then is the high-water mark the new generation was filled to."""
        filled: dict[str, Any] = {}

        async def fill(index: str) -> None:
            filled.update(await self.sync(postgres=postgres, mongo_db=mongo_db, full=True, index=index))

        report = await self.manager.rebuild(self.spec, fill)
        if self.feed.kind == "postgres":
            await self.state.save_checkpoint(f"index-{self.name}", filled.get("checkpoint"))
        return report
