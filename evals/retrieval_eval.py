"""Retrieval quality over the knowledge base: recall@k, MRR and nDCG@5 per search mode, on a labelled set."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from evals.harness import latency_summary
from evals.metrics import dedupe, mean_reciprocal_rank, ndcg_at_k, recall_at_k

MODES: tuple[tuple[str, str, str], ...] = (("knn", "knn", "minmax"), ("bm25", "bm25", "minmax"),
                                          ("hybrid-minmax", "hybrid", "minmax"), ("hybrid-rrf", "hybrid", "rrf"))
K = 10


def load_queries() -> list[tuple[str, set[str]]]:
    raw = json.loads(resources.files("evals").joinpath("data", "retrieval_queries.json").read_text("utf-8"))
    return [(q["query"], set(q["relevant"])) for q in raw["queries"]]


async def run(settings: Any, progress: Any = None) -> dict[str, Any]:
    """Every labelled query through `KnowledgeRetriever.search` (RowScope.none(): public KB only) per mode."""
    from retrieval.encoder import SentenceTransformerEncoder
    from retrieval.service import KnowledgeRetriever
    from stores.scope import RowScope
    from stores.search import SearchStore

    queries = load_queries()
    search = SearchStore(settings.opensearch_url.get_secret_value(), prefix=settings.index_prefix)
    await search.connect()
    try:
        retriever = KnowledgeRetriever(search, SentenceTransformerEncoder())
        await retriever.search("warm up the model", RowScope.none(), k=1, mode="knn")
        out: dict[str, Any] = {"queries": len(queries), "k": K, "modes": {}, "per_query": []}
        per_query: dict[str, dict[str, Any]] = {q: {"query": q, "relevant": sorted(rel)} for q, rel in queries}
        for label, mode, fusion in MODES:
            runs, lat = [], []
            for q, rel in queries:
                t = time.perf_counter()
                hits = await retriever.search(q, RowScope.none(), k=K, mode=mode, fusion=fusion)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t) * 1000)
                ranked = [h.source_id for h in hits]
                runs.append((ranked, rel))
                per_query[q][label] = dedupe(ranked)[:3]
                if progress:
                    progress()
            out["modes"][label] = {
                "recall@1": round(sum(recall_at_k(r, rel, 1) for r, rel in runs) / len(runs), 4),
                "recall@3": round(sum(recall_at_k(r, rel, 3) for r, rel in runs) / len(runs), 4),
                "recall@5": round(sum(recall_at_k(r, rel, 5) for r, rel in runs) / len(runs), 4),
                "mrr": round(mean_reciprocal_rank(runs), 4),
                "ndcg@5": round(sum(ndcg_at_k(r, rel, 5) for r, rel in runs) / len(runs), 4),
                "latency": latency_summary(lat),
            }
        out["per_query"] = list(per_query.values())
        return out
    finally:
        await search.close()


def steps() -> int:
    return len(load_queries()) * len(MODES)
