"""Ingestion into the knowledge index: redact → chunk (tiktoken) → embed → bulk index, per batch.

* Resumable: after each batch the source's last record key is checkpointed in `<prefix>-ingest-state`;
  a run that stopped part-way resumes after it (a finished run starts over, cheaply: unchanged
  documents — same content hash — are not re-embedded, and a changed document re-embeds only the chunks
  whose embedded text changed: the others keep their stored vectors).
* Idempotent: chunk ids are deterministic (`<doc_type>:<source_id>#<n>`); stale chunks of a changed
  or superseded document are deleted.
* Malformed records are skipped, recorded (`kind=error` in the state index) and the run continues.
* Incremental: `apply_events` consumes the credit store's change events (outbox or change stream).
* Writes carry an external version (the write time) and deletes leave tombstones, so an alias-swap
  rebuild running meanwhile loses neither (`stores.search.indexes`).
* With an `EmbeddingRepository`, every indexed chunk has a metadata record in Mongo's `embeddings`
  (model, dim, vector id, source id/type/version, user); records follow re-indexing and deletes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from retrieval.chunking import Chunker, ChunkingConfig
from retrieval.documents import Chunk, MalformedDocument, SourceDoc
from retrieval.encoder import Encoder
from retrieval.redactor import RedactionEngine, text_redactor
from retrieval.sources import Record, Source
from stores.errors import InvalidData, NotFound
from stores.search.catalog import CHUNKS, INGEST_STATE, chunks_spec, static_specs
from stores.search.client import SearchStore
from stores.search.documents import SearchIndex, VersionedDoc
from stores.search.indexes import IndexManager, version_now
from stores.search.ingest_state import IngestState, SkipRecord
from stores.search.mappings import KnnMethod

if TYPE_CHECKING:
    from stores.mongo.documents import EmbeddingRecord
    from stores.mongo.embeddings import EmbeddingRepository

MAX_DOC_CHARS = 1_000_000
MAX_SKIPS_REPORTED = 100
#: Batches in flight in `Ingestor.run`: one being prepared, one embedding, one being written.
PIPELINE_DEPTH = 3
#: Documents per batch: one bulk request, one encode (texts sorted by length within it: the ~170 chunks of 128 bench
#: documents pad +2.6 % tokens, the ~45 of the former 32 +8.2 %), two lookups and one checkpoint.
BATCH_DOCS = 128


class IngestReport(BaseModel):
    source: str
    resumed_after: str | None = None
    records: int = 0
    docs_indexed: int = 0
    docs_unchanged: int = 0
    docs_skipped: int = 0
    docs_deleted: int = 0
    chunks_indexed: int = 0
    #: Chunks run through the encoder; the rest of `chunks_indexed` kept their stored vectors (same text).
    chunks_embedded: int = 0
    #: Chunks not re-embedded: those of unchanged documents plus unchanged chunks of changed ones.
    chunks_unchanged: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    skipped: list[SkipRecord] = Field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_indexed / self.seconds if self.seconds else 0.0

    def skip(self, source: str, source_id: str, reason: str) -> SkipRecord:
        rec = SkipRecord(source=source, source_id=source_id, reason=reason[:500])
        self.docs_skipped += 1
        if len(self.skipped) < MAX_SKIPS_REPORTED:
            self.skipped.append(rec)
        return rec


Progress = Callable[[IngestReport], None]
#: A document ready to index: redacted, its content hash, its chunks.
Prepared = tuple[SourceDoc, str, list[Chunk]]


def content_sha(doc: SourceDoc, text: str, chunking: str = "") -> str:
    """What decides re-embedding: the document's identity, owner and redacted text, and the chunking."""
    h = hashlib.sha256()
    for part in (doc.doc_type, doc.source_id, doc.version, doc.title, doc.user_id or "", doc.visibility, text,
                 chunking):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


class Ingestor:
    """Writes documents into `<prefix>-chunks` through its alias; `redact` is the PII redaction engine
    (`guards.redaction.redact`) every document goes through first."""

    def __init__(self, search: SearchStore, encoder: Encoder, *, redact: RedactionEngine,
                 chunker: Chunker | None = None, batch_docs: int = BATCH_DOCS, method: KnnMethod | None = None,
                 progress: Progress | None = None, embeddings: EmbeddingRepository | None = None) -> None:
        self.search = search
        self.encoder = encoder
        self.chunker = chunker or Chunker()
        cfg = self.chunker.config
        # Non-default chunking joins the content hash, so changing it re-chunks (and re-embeds) documents.
        self._chunking = "" if cfg == ChunkingConfig() else f"{cfg.size}/{cfg.overlap}/{cfg.encoding}"
        self.redact = redact
        self.redactor = text_redactor(redact)
        self.batch_docs = batch_docs
        self.method = method or KnnMethod()
        self._graph_given = method is not None  # else an existing index's own HNSW graph is kept
        self.embeddings = embeddings
        self.spec = chunks_spec(encoder.dim, self.method, model=encoder.name)
        self.state_spec = static_specs()[INGEST_STATE]
        self.index = SearchIndex(search, CHUNKS)
        self.alias = self.index.alias
        self.state = IngestState(search)
        self.progress = progress
        self.indexes = IndexManager(search)

    async def ensure_indexes(self) -> None:
        """Create the indexes when missing; refuse an existing knowledge index built differently."""
        await self.indexes.ensure(self.spec)
        await self.indexes.ensure(self.state_spec)
        meta = await self.indexes.meta(self.spec) or {}
        want = {"embedding_model": self.encoder.name, "dim": self.encoder.dim, "knn_method": self.method.body()}
        have = {k: meta.get(k) for k in want}
        if not self._graph_given and have["knn_method"] and have != want:
            # Only the graph differs (KREDETE_KNN_M / _EF_CONSTRUCTION changed since it was built): the index
            # keeps its graph (`kredete search reindex chunks --knn-graph` rebuilds it); scoring is unchanged.
            graph_only = {**have["knn_method"], "parameters": want["knn_method"]["parameters"]}
            if {**have, "knn_method": graph_only} == want:
                self.method = KnnMethod.from_body(have["knn_method"])
                self.spec = chunks_spec(self.encoder.dim, self.method, model=self.encoder.name)
                want["knn_method"] = self.method.body()
        if have != want:
            raise InvalidData(f"{self.alias} was built with {have}, this ingestion needs {want}; run "
                              "`kredete ingest --reset` (re-embeds everything) or use the index's settings",
                              store="retrieval")

    async def stale_vectors(self) -> str | None:
        """The encoder an existing knowledge index's vectors come from, when it is not this ingestion's (None:
        no index yet, or the same encoder). Such an index can only be re-embedded (`reset`), never mixed."""
        meta = await self.indexes.meta(self.spec) or {}
        have = meta.get("embedding_model")
        return have if have and have != self.encoder.name else None

    async def reset(self) -> None:
        """Drop the knowledge index, all checkpoints/skip records and the index's embedding records,
        then recreate them empty."""
        await self.indexes.drop(self.spec)
        await self.indexes.drop(self.state_spec)
        if self.embeddings is not None:
            await self.embeddings.delete_index(self.alias)
        await self.ensure_indexes()

    # --- checkpoints and skip records -----------------------------------------------------------
    async def checkpoint(self, source: str) -> dict[str, Any] | None:
        return await self.state.checkpoint(source)

    async def _save_checkpoint(self, source: str, last_key: str | None, done: bool, report: IngestReport) -> None:
        await self.state.save_checkpoint(source, last_key, done=done, counts=report.model_dump(exclude={"skipped"}))

    async def skip_records(self, source: str | None = None, limit: int = 100) -> list[SkipRecord]:
        """Recorded skipped documents (why each was not indexed)."""
        return await self.state.skips(source, limit)

    # --- runs -----------------------------------------------------------------------------------
    async def run(self, source: Source, *, resume: bool = True, skip_unchanged: bool = True) -> IngestReport:
        """Ingest every record of `source`; resume after the last checkpoint of an unfinished run."""
        await self.ensure_indexes()
        t0 = time.perf_counter()
        ckpt = await self.checkpoint(source.name) if resume else None
        after = ckpt["last_key"] if ckpt and not ckpt.get("done") else None
        report = IngestReport(source=source.name, resumed_after=after)
        batch: list[Record] = []
        last_key = after
        # A pipeline of PIPELINE_DEPTH batches in flight, one per stage: batch k+2 is redacted, chunked and
        # looked up while batch k+1 embeds and batch k is written to OpenSearch, so the encoder (the slowest
        # stage) always has its next batch ready. Each stage takes batches in order; checkpoints follow
        # finished batches in order.
        pending: deque[tuple[asyncio.Task[None], str]] = deque()
        previous: _Stages | None = None
        seen: set[str] = set()  # documents of this run's earlier batches (maybe not written when looked up)
        batch_failed = False

        async def settle_oldest() -> None:
            nonlocal last_key, batch_failed
            task, key = pending.popleft()
            try:
                await task
                report.seconds = time.perf_counter() - t0
                await self._save_checkpoint(source.name, key, False, report)
            except BaseException:
                batch_failed = True
                raise
            last_key = key

        async def submit(records: list[Record]) -> None:
            nonlocal previous
            stages = _Stages()
            pending.append((asyncio.create_task(
                self._flush(source.name, records, report, skip_unchanged, stages, previous, seen)), records[-1].key))
            previous = stages
            while len(pending) >= PIPELINE_DEPTH:
                await settle_oldest()

        try:
            async for rec in source.records(after):
                batch.append(rec)
                if sum(max(1, len(r.docs)) for r in batch) >= self.batch_docs:
                    await submit(batch)
                    batch = []
            if batch:
                await submit(batch)
            while pending:
                await settle_oldest()
        except BaseException as exc:
            # A failing source: what was read is finished and checkpointed. A failing batch: the run stops at
            # the last finished one (later batches are cancelled; a resume redoes them). Cancelled (Ctrl-C):
            # stop now; the next run resumes after the last checkpoint.
            try:
                while pending and isinstance(exc, Exception) and not batch_failed:
                    await settle_oldest()
            finally:
                _cancel(pending)
            raise
        report.seconds = round(time.perf_counter() - t0, 3)
        await self.index.refresh()
        await self._save_checkpoint(source.name, last_key, True, report)
        await self.indexes.prune_tombstones(self.spec)
        return report

    async def _flush(self, source: str, batch: list[Record], report: IngestReport, skip_unchanged: bool,
                     stages: _Stages, previous: _Stages | None, seen: set[str]) -> None:
        skips: list[SkipRecord] = []
        docs: list[SourceDoc] = []
        for rec in batch:
            report.records += 1
            if rec.error is not None:
                skips.append(report.skip(source, rec.error.source_id, rec.error.reason))
            docs.extend(rec.docs)
        if previous is not None:
            await previous.prepared.wait()
        work = await self._prepare_batch(docs, report, skips, skip_unchanged)
        work.new -= seen  # an earlier batch may hold it and not be written yet: its stale chunks are deleted
        seen.update(d.source_key for d, _, _ in work.prepared)
        stages.prepared.set()
        if previous is not None:
            await previous.embedded.wait()
        vectors = await self._embed_batch(work, report)
        stages.embedded.set()
        # Let the next batch hand its texts to the encoder before this one builds, serialises and compresses
        # its bulk body on the event loop (~0.1 s for 90 chunks, which otherwise left the encoder idle).
        await asyncio.sleep(0)
        if previous is not None:
            await previous.written.wait()
        await self._write_batch(work, vectors, report, skips)
        await self.state.record_skips(skips)
        stages.written.set()
        if self.progress:
            self.progress(report)

    async def index_docs(self, docs: list[SourceDoc], report: IngestReport | None = None,
                         skips: list[SkipRecord] | None = None, *, skip_unchanged: bool = True) -> IngestReport:
        """Redact, chunk, embed and index `docs`; problems become skip records, never exceptions."""
        report = report or IngestReport(source="docs")
        skips = skips if skips is not None else []
        work = await self._prepare_batch(docs, report, skips, skip_unchanged)
        await self._write_batch(work, await self._embed_batch(work, report), report, skips)
        return report

    async def _prepare_batch(self, docs: list[SourceDoc], report: IngestReport, skips: list[SkipRecord],
                             skip_unchanged: bool) -> _Work:
        """Redact and chunk `docs` (a worker thread), drop unchanged documents, find reusable stored vectors."""
        prepared, rejected = await asyncio.to_thread(self._prepare, docs) if docs else ([], [])
        skips.extend(report.skip(report.source, source_id, reason) for source_id, reason in rejected)
        new: set[str] = set()
        if skip_unchanged and prepared:
            prepared, new = await self._drop_unchanged(prepared, report)
        chunks = [c for _, _, cs in prepared for c in cs]
        # Only documents that were stored can have vectors to keep (not looking is always safe: it re-embeds).
        had = [c for c in chunks if c.source_key not in new]
        kept = await self._stored_vectors(had) if skip_unchanged and had else {}
        return _Work(prepared, chunks, kept, new)

    async def _embed_batch(self, work: _Work, report: IngestReport) -> list[Any]:
        """Vectors of `work.chunks` in order: stored ones kept, the others embedded."""
        todo = [c for c in work.chunks if c.chunk_id not in work.kept]
        t = time.perf_counter()
        fresh = await self.encoder.embed_documents([c.embedding_text() for c in todo]) if todo else []
        report.embed_seconds += time.perf_counter() - t
        made = dict(zip([c.chunk_id for c in todo], fresh, strict=True))
        report.chunks_embedded += len(todo)
        report.chunks_unchanged += len(work.kept)
        return [work.kept[c.chunk_id] if c.chunk_id in work.kept else made[c.chunk_id] for c in work.chunks]

    async def _write_batch(self, work: _Work, vectors: list[Any], report: IngestReport,
                           skips: list[SkipRecord]) -> None:
        """Embedding records, the bulk write, and stale chunks of the written documents deleted."""
        prepared = work.prepared
        if not prepared:
            return
        sha_of = {c.chunk_id: sha for _, sha, cs in prepared for c in cs}
        if self.embeddings is not None:
            # Metadata first: a crash after it leaves records the next run rewrites; never chunks without one.
            await self.embeddings.record([r for d, _, cs in prepared for r in self._records(d, cs)])
        failed = await self._bulk(work.chunks, vectors, sha_of)
        by_key = {d.source_key: d for d, _, _ in prepared}
        for key, reason in failed.items():
            skips.append(report.skip(report.source, by_key[key].source_id, f"index rejected: {reason}"))
        if failed and self.embeddings is not None:
            await self.embeddings.delete_sources(failed, model=self.encoder.name)
        ok = [(d, cs) for d, _, cs in prepared if d.source_key not in failed]
        report.docs_indexed += len(ok)
        report.chunks_indexed += sum(len(cs) for _, cs in ok)
        await self._delete_stale(ok, work.new)

    def _records(self, doc: SourceDoc, chunks: list[Chunk]) -> list[EmbeddingRecord]:
        from stores.mongo.documents import GLOBAL_USER_ID, EmbeddingRecord

        return [EmbeddingRecord(user_id=c.user_id or GLOBAL_USER_ID, source_type=c.doc_type, source_id=c.source_id,
                                source_version=c.version, chunk_index=c.chunk_index, vector_id=c.chunk_id,
                                index_name=self.alias, model=self.encoder.name, dim=self.encoder.dim,
                                text_sha256=hashlib.sha256(c.text.encode("utf-8")).hexdigest(),
                                token_count=c.token_end - c.token_start)
                for c in chunks]

    def _prepare(self, docs: list[SourceDoc]) -> tuple[list[Prepared], list[tuple[str, str]]]:
        """(document, content hash, chunks) of each document redacted and chunked, and (source id, reason) of
        each one that could not be (runs in a worker thread: the report is updated by the caller)."""
        out = []
        rejected: list[tuple[str, str]] = []
        for doc in docs:
            try:
                if len(doc.text) > MAX_DOC_CHARS:
                    raise MalformedDocument(doc.source_id, f"text too large ({len(doc.text)} characters)")
                text = self.redactor(doc.text, doc.known_names).strip()
                if not text:
                    raise MalformedDocument(doc.source_id, "empty text")
                clean = doc.model_copy(update={"text": text, "title": self.redactor(doc.title, doc.known_names)})
                chunks = self.chunker.split(clean)
                if not chunks:
                    raise MalformedDocument(doc.source_id, "no tokens")
                if self.embeddings is not None:
                    self._records(clean, chunks[:1])  # a record the metadata store would refuse: skip early
                out.append((clean, content_sha(clean, text, self._chunking), chunks))
            except MalformedDocument as exc:
                rejected.append((doc.source_id, exc.reason))
            except Exception as exc:  # redactor/tokenizer failure on one document
                rejected.append((doc.source_id, f"{type(exc).__name__}: {exc}"))
        return out, rejected

    async def _drop_unchanged(self, prepared: list[Prepared], report: IngestReport) -> tuple[list[Prepared], set[str]]:
        """The documents to index (not the same as stored), and the keys of those with no first chunk stored."""
        ids = [cs[0].chunk_id for _, _, cs in prepared]
        try:
            stored = await self.index.sources(ids, ["content_sha", "n_chunks"])
        except NotFound:
            return prepared, {d.source_key for d, _, _ in prepared}
        keep = []
        for doc, sha, cs in prepared:
            prev = stored.get(cs[0].chunk_id)
            if prev and prev.get("content_sha") == sha and prev.get("n_chunks") == len(cs):
                report.docs_unchanged += 1
                report.chunks_unchanged += len(cs)
            else:
                keep.append((doc, sha, cs))
        return keep, {d.source_key for d, _, cs in keep if cs[0].chunk_id not in stored}

    async def _stored_vectors(self, chunks: list[Chunk]) -> dict[str, Any]:
        """Stored vectors of these chunks whose embedded text (title and text) is the same as now: a changed
        document re-embeds only its changed chunks. The index holds one encoder's vectors (`ensure_indexes`)."""
        try:
            stored = await self.index.sources([c.chunk_id for c in chunks], ["title", "text", "embedding"])
        except NotFound:
            return {}
        kept: dict[str, Any] = {}
        for c in chunks:
            prev = stored.get(c.chunk_id)
            if prev and len(prev.get("embedding") or ()) == self.encoder.dim and prev.get("text") == c.text \
                    and (prev.get("title") or "") == c.title:
                kept[c.chunk_id] = prev["embedding"]
        return kept

    async def _bulk(self, chunks: list[Chunk], vectors: Any, sha_of: dict[str, str]) -> dict[str, str]:
        """Index chunks; returns {source_key: reason} for documents with a rejected chunk."""
        now = _now()
        version = version_now()  # one write time for the batch: a later write of the same chunk wins
        docs = []
        for c, v in zip(chunks, vectors, strict=True):
            body = c.model_dump(mode="json")
            body.update(embedding=float32_json(v), indexed_at=now, content_sha=sha_of[c.chunk_id])
            docs.append(VersionedDoc(c.chunk_id, version, body))
        result = await self.index.write(docs)
        key_of = {c.chunk_id: c.source_key for c in chunks}
        failed: dict[str, str] = {}
        for chunk_id, reason in result.failed.items():
            failed.setdefault(key_of[chunk_id], reason)
        return failed

    async def _delete_stale(self, ok: list[tuple[SourceDoc, list[Chunk]]], new: set[str]) -> None:
        """Delete chunks of these documents that this run did not write, and superseded versions. Documents in
        `new` had no chunk stored when looked up (before their write): none of theirs can be stale, and a batch
        of only such documents (a first ingestion) needs no delete (each is a refresh and a delete_by_query)."""
        if not ok:
            return
        had = [(d, cs) for d, cs in ok if d.source_key not in new]
        old = [f"{d.doc_type}:{d.supersedes}" for d, _ in ok if d.supersedes]
        should: list[dict[str, Any]] = []
        if had:
            should.append({"bool": {"filter": [{"terms": {"source_key": [d.source_key for d, _ in had]}}],
                                    "must_not": [{"ids": {"values": [c.chunk_id for _, cs in had for c in cs]}}]}})
        if old:
            should.append({"terms": {"source_key": old}})
        if should:
            await self.indexes.delete_where(self.spec, {"bool": {"should": should, "minimum_should_match": 1}})
        if self.embeddings is not None:
            await self.embeddings.prune([(d.doc_type, d.source_id, len(cs)) for d, cs in ok], model=self.encoder.name)
            if old:
                await self.embeddings.delete_sources(old, model=self.encoder.name)

    async def delete_sources(self, source_keys: Iterable[str], *, letter_prefixes: Iterable[str] = ()) -> int:
        """Delete every chunk of these documents (and letters `dispute_letter` of these dispute ids)."""
        should: list[dict[str, Any]] = []
        keys = sorted(set(source_keys))
        letter_prefixes = sorted(set(letter_prefixes))
        if keys:
            should.append({"terms": {"source_key": keys}})
        for p in letter_prefixes:
            should.append({"bool": {"filter": [{"term": {"doc_type": "dispute_letter"}},
                                               {"prefix": {"source_id": f"{p}."}}]}})
        if not should:
            return 0
        if self.embeddings is not None:
            await self.embeddings.delete_sources(keys, letter_prefixes=letter_prefixes)
        return await self.indexes.delete_where(
            self.spec, {"bool": {"should": should, "minimum_should_match": 1}}, refresh=True)


@dataclass
class _Work:
    """One batch between the pipeline's stages: (document, content hash, chunks) of the documents to index,
    their chunks in order, the stored vectors that chunks with unchanged text keep, and which documents are new."""

    prepared: list[Prepared]
    chunks: list[Chunk]
    kept: dict[str, Any]
    #: Keys of documents with nothing stored when looked up: no stale chunks of theirs to delete.
    new: set[str] = field(default_factory=set)


@dataclass
class _Stages:
    """Set as one batch finishes each stage: the next batch enters a stage after the previous one left it."""

    prepared: asyncio.Event = field(default_factory=asyncio.Event)
    embedded: asyncio.Event = field(default_factory=asyncio.Event)
    written: asyncio.Event = field(default_factory=asyncio.Event)


def _cancel(pending: deque[tuple[asyncio.Task[None], str]]) -> None:
    """Cancel the batches still in flight (an embed already running in a thread finishes there, unused)."""
    for task, _ in pending:
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: it failed after an earlier batch did, and that one is raised
        else:
            task.cancel()
    pending.clear()


def float32_json(vector: Any) -> list[float]:
    """A vector's float32 values as floats of 9 significant digits, which name each float32 exactly (the index
    stores float32): the doubles' 17 digits made the bulk body 1.5x longer, and slower to serialise and compress.
    Rounded in numpy (a tenth of the CPU of formatting each float)."""
    x = np.asarray(vector, dtype=np.float32).astype(np.float64)
    magnitude = np.abs(x)
    digits = 8 - np.floor(np.log10(np.where(magnitude > 0, magnitude, 1.0)))
    scale = 10.0 ** np.clip(digits, -300, 300)
    return (np.round(x * scale) / scale).tolist()


def _now() -> str:
    return datetime.now(UTC).isoformat()
