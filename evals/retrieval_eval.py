"""Retrieval quality over the evals knowledge base (`evals.kb_index`: the product's help articles plus the evals
articles): recall@k, MRR and nDCG@k per search mode, on the labelled queries of `evals/data/kb_queries.json`."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from evals.harness import latency_summary
from evals.metrics import dedupe, mean_reciprocal_rank, ndcg_at_k, recall_at_k

MODES: tuple[tuple[str, str, str], ...] = (("knn", "knn", "minmax"), ("bm25", "bm25", "minmax"),
                                          ("hybrid-minmax", "hybrid", "minmax"), ("hybrid-rrf", "hybrid", "rrf"))
#: Metrics look at the first K distinct articles; FETCH chunks are asked for (an article may have several).
K = 10
FETCH = 20
QUERIES = "kb_queries.json"


def load_queries(limit: int | None = None) -> list[tuple[str, set[str]]]:
    """The labelled queries; `limit` keeps an evenly spread sample of that many (the small CI run)."""
    raw = json.loads(resources.files("evals").joinpath("data", QUERIES).read_text("utf-8"))
    queries = [(q["query"], set(q["relevant"])) for q in raw["queries"]]
    if limit is not None and limit < len(queries):
        step = len(queries) / limit
        queries = [queries[int(i * step)] for i in range(limit)]
    return queries


def scores(runs: list[tuple[list[str], set[str]]]) -> dict[str, float]:
    n = len(runs)
    return {
        "recall@1": round(sum(recall_at_k(r, rel, 1) for r, rel in runs) / n, 4),
        "recall@3": round(sum(recall_at_k(r, rel, 3) for r, rel in runs) / n, 4),
        "recall@5": round(sum(recall_at_k(r, rel, 5) for r, rel in runs) / n, 4),
        "recall@10": round(sum(recall_at_k(r, rel, 10) for r, rel in runs) / n, 4),
        "mrr": round(mean_reciprocal_rank(runs), 4),
        "ndcg@5": round(sum(ndcg_at_k(r, rel, 5) for r, rel in runs) / n, 4),
        "ndcg@10": round(sum(ndcg_at_k(r, rel, 10) for r, rel in runs) / n, 4),
    }


async def run(settings: Any, progress: Any = None, *, limit: int | None = None) -> dict[str, Any]:
    """Index the evals KB (incremental), then every labelled query through `KnowledgeRetriever.search`
    (RowScope.none(): public articles only) per mode."""
    from evals.kb_index import article_files, ensure_indexed, kb_prefix
    from retrieval.encoder import encoder_from_settings
    from retrieval.service import KnowledgeRetriever
    from stores.scope import RowScope
    from stores.search import SearchStore

    queries = load_queries(limit)
    encoder = encoder_from_settings(settings)  # KREDETE_ENCODER; each encoder has its own evals index
    ingest = await ensure_indexed(settings, encoder)
    search = SearchStore(settings.opensearch_url.get_secret_value(), prefix=kb_prefix(settings))
    await search.connect()
    try:
        retriever = KnowledgeRetriever(search, encoder)
        await retriever.search("warm up the model", RowScope.none(), k=1, mode="knn")
        out: dict[str, Any] = {"queries": len(queries), "articles": len(article_files()), "k": K,
                               "fetched_chunks": FETCH, "encoder": encoder.name,
                               "index": f"{kb_prefix(settings)}-chunks", "ingest": ingest,
                               "modes": {}, "per_query": []}
        per_query: dict[str, dict[str, Any]] = {q: {"query": q, "relevant": sorted(rel)} for q, rel in queries}
        for label, mode, fusion in MODES:
            runs, lat = [], []
            for q, rel in queries:
                t = time.perf_counter()
                hits = await retriever.search(q, RowScope.none(), k=FETCH, mode=mode, fusion=fusion)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t) * 1000)
                ranked = [h.source_id for h in hits]
                runs.append((ranked, rel))
                per_query[q][label] = dedupe(ranked)[:3]
                if progress:
                    progress()
            out["modes"][label] = {**scores(runs), "latency": latency_summary(lat)}
        out["per_query"] = list(per_query.values())
        return out
    finally:
        await search.close()


def steps(limit: int | None = None) -> int:
    return len(load_queries(limit)) * len(MODES)
