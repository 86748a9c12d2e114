"""`kredete ingest` (knowledge index) and `kredete search reindex|sync|status` (all search indexes)."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import typer

from kredete.commands.common import err, fail

search_app = typer.Typer(no_args_is_help=True, help="Search indexes: rebuild behind an alias, sync, status.")


class Only(StrEnum):
    kb = "kb"
    credit = "credit"
    disputes = "disputes"
    plans = "plans"
    s3 = "s3"


class Engine(StrEnum):
    lucene = "lucene"
    faiss = "faiss"
    nmslib = "nmslib"


class Space(StrEnum):
    cosinesimil = "cosinesimil"
    l2 = "l2"
    innerproduct = "innerproduct"


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.add_typer(search_app, name="search")


def _run(coro: Any) -> Any:
    from stores.errors import StoreError

    try:
        return asyncio.run(coro)
    except StoreError as exc:
        fail(str(exc))


def ingest(only: Annotated[list[Only] | None, typer.Option("--only", help="Sources to ingest (repeatable).")] = None,
           reset: Annotated[bool, typer.Option("--reset", help="Drop the knowledge index and checkpoints first.")]
           = False,
           resume: Annotated[bool, typer.Option(help="Resume an unfinished run from its checkpoint.")] = True,
           follow: Annotated[bool, typer.Option("--follow", help="Then apply credit-store change events (knowledge, "
                                                                 "credit-reports and disputes indexes) until "
                                                                 "interrupted.")] = False,
           chunk_tokens: Annotated[int | None, typer.Option(help="Tokens per chunk [KREDETE_CHUNK_TOKENS, 128].")]
           = None,
           chunk_overlap: Annotated[int | None, typer.Option(help="Tokens shared by consecutive chunks "
                                                                  "[KREDETE_CHUNK_OVERLAP, 32].")] = None,
           knn_engine: Annotated[Engine | None, typer.Option(help="kNN engine of a new index [KREDETE_KNN_ENGINE, "
                                                                  "lucene; only lucene runs locally].")] = None,
           knn_space: Annotated[Space | None, typer.Option(help="kNN space of a new index [KREDETE_KNN_SPACE, "
                                                                "cosinesimil].")] = None,
           reembed_stale: Annotated[bool, typer.Option("--reembed-stale", help="Re-embed from scratch (as "
                                                       "--reset) when the index holds another encoder's vectors, "
                                                       "instead of refusing.")] = False) -> None:
    """Chunk, redact, embed and index knowledge-base articles, credit reports, disputes and letters,
    action plans and text documents from S3 into the knowledge index; record each chunk's embedding
    metadata in the credit store. An existing index keeps its engine and space; asking for others needs --reset."""
    _run(_ingest(list(only or Only), reset, resume, follow, chunk_tokens, chunk_overlap, knn_engine, knn_space,
                 reembed_stale))


async def _ingest(only: list[Only], reset: bool, resume: bool, follow: bool, chunk_tokens: int | None,
                  chunk_overlap: int | None, knn_engine: Engine | None, knn_space: Space | None,
                  reembed_stale: bool = False) -> None:
    from pydantic import ValidationError
    from rich.table import Table

    from config.settings import resolve
    from guards.redaction import redact
    from retrieval import sources as src
    from retrieval.chunking import Chunker, ChunkingConfig
    from retrieval.encoder import encoder_from_settings
    from retrieval.ingest import Ingestor, IngestReport
    from stores.mongo.embeddings import EmbeddingRepository
    from stores.registry import connect
    from stores.search.mappings import KnnMethod

    settings = resolve()
    try:
        chunking = ChunkingConfig(size=chunk_tokens or settings.chunk_tokens,
                                  overlap=settings.chunk_overlap if chunk_overlap is None else chunk_overlap)
        # unset options keep KnnMethod's defaults: the KREDETE_KNN_* settings
        method = KnnMethod(**{k: v for k, v in (("engine", knn_engine), ("space_type", knn_space)) if v})
    except ValidationError as exc:
        fail("; ".join(e["msg"] for e in exc.errors()))
    needs = {"search", "mongo"}  # Mongo: sources, the embedding-metadata records and the change feed
    if Only.s3 in only:
        needs.add("postgres")  # the documents are read as the ingestion principal (objects_for below)
    stores = await connect(tuple(needs), settings=settings)
    try:
        explicit = knn_engine or knn_space or {"knn_engine", "knn_space", "knn_m",
                                               "knn_ef_construction"} & settings.model_fields_set
        if not (reset or explicit):  # unless asked otherwise, an existing index keeps its method
            from stores.search.catalog import chunks_spec
            from stores.search.indexes import IndexManager

            meta = await IndexManager(stores.search).meta(chunks_spec())
            if meta and meta.get("knn_method"):
                method = KnnMethod.from_body(meta["knn_method"])
        with err.status(f"loading the embedding model ({settings.encoder})") as status:
            encoder = encoder_from_settings(settings, step=lambda msg: status.update(msg))

        def progress(r: IngestReport) -> None:
            err.print(f"  {r.source}: {r.records} records, {r.chunks_indexed} chunks written, {r.chunks_embedded} "
                      f"embedded, {r.chunks_unchanged} not re-embedded (unchanged), {r.docs_unchanged} documents "
                      f"unchanged, {r.docs_skipped} skipped", highlight=False)

        from stores.objects.buckets import documents_bucket
        from stores.objects.principals import objects_for

        async def owner_names(user_id: str) -> list[str]:
            """Names of a document's owner, decrypted inside the adapter, so the redactor masks them."""
            from stores.crypto import FieldCipher
            from stores.postgres import UserRepository

            cipher = FieldCipher.from_settings(stores.settings)
            known = await UserRepository(stores.postgres, cipher=cipher).known_pii([UUID(user_id)])
            return next(iter(known.values()), {}).get("names", [])

        from stores.crypto import FieldCipher
        from stores.objects.sealed import open_sealed

        doc_cipher = FieldCipher.from_settings(stores.settings)

        def unseal(key: str, body: bytes, meta: dict[str, str]) -> bytes:
            """A document sealed under its owner's data key (KeyDestroyed, an InvalidData, once erased)."""
            return open_sealed(doc_cipher, key, body, meta)

        ingestor = Ingestor(stores.search, encoder, redact=redact, progress=progress, chunker=Chunker(chunking),
                            method=method, embeddings=EmbeddingRepository(stores.mongo))
        if reembed_stale and not reset and (stale := await ingestor.stale_vectors()):
            err.print(f"the knowledge index holds vectors of {stale}; re-embedding everything with "
                      f"{encoder.name}", highlight=False)
            reset = True
        if reset:
            await ingestor.reset()
        factories = {
            Only.kb: lambda: src.KbSource(),
            Only.credit: lambda: src.CreditReportSource(stores.mongo.db),
            Only.disputes: lambda: src.DisputeSource(stores.mongo.db),
            Only.plans: lambda: src.ActionPlanSource(stores.mongo.db),
            # as the ingestion reader (read and list documents only), never the root user
            Only.s3: lambda: src.S3Source(objects_for(stores.settings, "ingestion"),
                                          documents_bucket(stores.settings.s3_bucket_prefix), owner_names=owner_names,
                                          unseal=unseal),
        }
        table = Table("source", "records", "indexed", "unchanged", "skipped", "chunks", "embedded", "not re-embedded",
                      "chunks/s", "resumed after", title=f"encoder: {encoder.name}")
        for name in only:
            report = await ingestor.run(factories[name](), resume=resume)
            table.add_row(report.source, str(report.records), str(report.docs_indexed), str(report.docs_unchanged),
                          str(report.docs_skipped), str(report.chunks_indexed), str(report.chunks_embedded),
                          str(report.chunks_unchanged), f"{report.chunks_per_s:.1f}",
                          report.resumed_after or "-")
            for s in report.skipped[:10]:
                err.print(f"  [yellow]skipped[/] {s.source_id}: {s.reason}", highlight=False)
        err.print(table)
        if follow:
            from retrieval.changes import follow as follow_changes

            err.print("following credit-store change events (Ctrl-C to stop)")
            await follow_changes(ingestor, stores.mongo.db, asyncio.Event())
    finally:
        await stores.close()


@search_app.command("reindex")
def reindex(index: Annotated[str, typer.Argument(help="chunks, transactions, users, audit-logs, credit-reports "
                                                      "or disputes")],
            keep_old: Annotated[bool, typer.Option("--keep-old", help="Keep the previous generation.")]
            = False,
            knn_graph: Annotated[bool, typer.Option("--knn-graph", help="chunks: build the new generation's HNSW "
                                                    "graph with KREDETE_KNN_M and KREDETE_KNN_EF_CONSTRUCTION "
                                                    "(vectors copied, not re-embedded).")] = False) -> None:
    """Rebuild an index into a new generation and swap its alias (reads never stop)."""
    _run(_reindex(index, keep_old, knn_graph))


async def _reindex(index: str, keep_old: bool, knn_graph: bool = False) -> None:
    from guards.redaction import redact
    from retrieval.feeds import FEEDS
    from retrieval.index_sync import DocIndexer
    from stores.registry import connect
    from stores.search.catalog import CHUNKS, chunks_spec, chunks_spec_from_meta
    from stores.search.indexes import IndexManager

    if index != CHUNKS and index not in FEEDS:
        fail(f"unknown index {index!r}; known: {[CHUNKS, *FEEDS]}")
    if knn_graph and index != CHUNKS:
        fail("--knn-graph applies to the chunks index only")
    feed = FEEDS.get(index)
    needs = ("search",) if feed is None else ("search", feed.kind)
    stores = await connect(needs)
    try:
        if feed is None:  # the knowledge index is copied (re-embedding is `kredete ingest --reset`)
            manager = IndexManager(stores.search)
            meta = await manager.meta(chunks_spec())
            if meta is None:
                fail(f"{stores.search.index_name(CHUNKS)} does not exist; run `kredete ingest`")
            # Rebuilt with the model, dimension and kNN method it was built with, not today's defaults, unless
            # --knn-graph asks for today's graph parameters (engine and space stay: the vectors are copied).
            graph = None
            if knn_graph:
                graph = {"m": stores.settings.knn_m, "ef_construction": stores.settings.knn_ef_construction}
            spec = chunks_spec_from_meta(meta, graph=graph)
            report = await manager.rebuild(spec, keep_old=keep_old)
        else:
            report = await DocIndexer(stores.search, index, redact=redact).rebuild(
                postgres=stores.postgres, mongo_db=stores.mongo.db if stores.mongo else None)
        err.print(f"{report.alias}: {report.old_index or '-'} -> {report.new_index}, "
                  f"{report.old_count} -> {report.new_count} documents "
                  f"({report.caught_up} caught up) in {report.seconds:.1f}s", highlight=False)
    finally:
        await stores.close()


@search_app.command("sync")
def sync(index: Annotated[list[str] | None, typer.Argument(help="Indexes (default: all but chunks).")] = None,
         full: Annotated[bool, typer.Option("--full", help="Ignore the checkpoint.")] = False,
         follow: Annotated[bool, typer.Option("--follow", help="Keep syncing the Postgres-fed indexes every "
                                                               "--interval seconds until interrupted (the Mongo-fed "
                                                               "ones follow `kredete ingest --follow`).")] = False,
         interval: Annotated[float, typer.Option(min=1.0, help="Seconds between syncs with --follow.")] = 10.0) -> None:
    """Index rows changed since the last checkpoint (Postgres by keyset, re-reading KREDETE_SEARCH_SYNC_LAG_S
    behind it for late commits; Mongo by scan)."""
    _run(_sync(index, full, follow, interval))


async def _sync(names: list[str] | None, full: bool, follow: bool = False, interval: float = 10.0) -> None:
    from guards.redaction import redact
    from retrieval.feeds import FEEDS
    from retrieval.index_sync import DocIndexer
    from stores.registry import connect

    names = names or list(FEEDS)
    unknown = sorted(set(names) - set(FEEDS))
    if unknown:
        fail(f"unknown index {unknown}; known: {list(FEEDS)}")
    stores = await connect(("search", *sorted({FEEDS[n].kind for n in names})))
    lag = stores.settings.search_sync_lag_s
    try:
        while True:
            for n in names:
                out = await DocIndexer(stores.search, n, redact=redact, lag=lag).sync(
                    postgres=stores.postgres, mongo_db=stores.mongo.db if stores.mongo else None, full=full)
                err.print(f"{n}: {out['indexed']} indexed, {out['skipped']} skipped", highlight=False)
            if not follow:
                return
            full = False
            names = [n for n in names if FEEDS[n].kind == "postgres"]
            if not names:
                fail("--follow keeps Postgres-fed indexes; the Mongo-fed ones follow `kredete ingest --follow`")
            await asyncio.sleep(interval)
    finally:
        await stores.close()


@search_app.command("status")
def status() -> None:
    """Aliases, their current generation and document counts."""
    _run(_status())


async def _status() -> None:
    from rich.table import Table

    from stores.registry import connect
    from stores.search.catalog import all_specs
    from stores.search.indexes import IndexManager

    stores = await connect(("search",))
    try:
        manager = IndexManager(stores.search)
        table = Table("alias", "index", "documents")
        for spec in all_specs().values():
            current = await manager.current_index(spec)
            table.add_row(manager.alias(spec), current or "-", str(await manager.count(current)) if current else "-")
        err.print(table)
    finally:
        await stores.close()
