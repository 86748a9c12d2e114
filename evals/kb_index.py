"""The evals knowledge base as its own index: the product's help articles (`retrieval/kb/articles`) plus the
evals articles (`evals/kb/articles`), ingested into `<prefix>-kb-chunks` through the same pipeline as
`kredete ingest` (redact, chunk, embed, index). Incremental: an unchanged article is not re-embedded, so a
second run only checks hashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from retrieval.documents import MalformedDocument
from retrieval.kb import parse_article
from retrieval.sources import Record

#: Suffix of the index prefix the evals KB lives under (`kredete-evals` -> `kredete-evals-kb-chunks`).
SUFFIX = "-kb"


def article_files() -> list[Any]:
    """Every article file of the evals KB, product articles first, each folder by name."""
    folders = (resources.files("retrieval.kb").joinpath("articles"),
               resources.files("evals").joinpath("kb", "articles"))
    return [f for folder in folders for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".md")]


class EvalsKbSource:
    """The ingestion source of the evals KB (keys: the file name, ascending, unique across both folders)."""

    name = "evals-kb"

    async def records(self, after: str | None = None) -> AsyncIterator[Record]:
        for f in sorted(article_files(), key=lambda f: f.name):
            if after is not None and f.name <= after:
                continue
            try:
                yield Record(f.name, [parse_article(f.name, f.read_text(encoding="utf-8"))])
            except MalformedDocument as exc:
                yield Record(f.name, error=exc)


def kb_prefix(settings: Any) -> str:
    """One index per encoder's vectors (`KREDETE_ENCODER` and the export's revision, e.g. `-onnx-int8-v2`):
    torch's keeps the name it had before the ONNX encoders. A new revision gets a new index rather than a
    stale one its queries would be refused on."""
    from retrieval.bundled_model import encoder_name

    _, _, variant = encoder_name(getattr(settings, "encoder", "torch")).partition("+")
    return f"{settings.index_prefix}{SUFFIX}" + (f"-{variant}" if variant else "")


async def ensure_indexed(settings: Any, encoder: Any) -> dict[str, Any]:
    """Bring `<prefix>-kb-chunks` up to date with the article files; the ingestion report's counts."""
    from guards.redaction import redact
    from retrieval.ingest import Ingestor
    from stores.search import SearchStore

    search = SearchStore(settings.opensearch_url.get_secret_value(), prefix=kb_prefix(settings))
    await search.connect()
    try:
        report = await Ingestor(search, encoder, redact=redact).run(EvalsKbSource(), resume=False)
    finally:
        await search.close()
    if report.docs_skipped:
        raise RuntimeError(f"evals KB: {report.docs_skipped} articles skipped: {report.skipped[:3]}")
    return {"articles": report.records, "indexed": report.docs_indexed, "unchanged": report.docs_unchanged,
            "chunks_indexed": report.chunks_indexed}
