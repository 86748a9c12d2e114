"""Retrieval benchmark, one run: kNN recall@10 vs exact search, query latency/QPS, ingestion vs raw encode.

    python -m bench.retrieval [--docs 2000] [--queries 100] [--concurrency 8]
    python -m bench.retrieval --cluster [--rounds 3]   # three-node cluster vs single node, same corpus

Corpus: the knowledge base plus deterministic synthetic documents (sentences of the KB articles
recombined, spread over 50 users), in a throw-away index prefix. Queries: the labelled set, paraphrases
written for this benchmark (`PARAPHRASES`, not drawn from the corpus) and, to fill `--queries`, the
first words of corpus sentences; recall is reported per group (a corpus sentence is its own nearest
neighbour, which makes recall easy). Latency: "warm" = the query vector is already in Redis (the
embedding is excluded; the Redis GET is included), as for a repeated query; "cold" = no cache, so the
query embedding (CPU, all-MiniLM-L6-v2 by `KREDETE_ENCODER`) is included. Results:
bench/results/retrieval.json and a table. The ceiling for ingestion is the raw encode of the same chunk texts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "retrieval.json"
CLUSTER_RESULTS = Path(__file__).parent / "results" / "retrieval_cluster.json"

#: Written for the benchmark: what customers and staff ask, in their words, not sentences of the corpus.
PARAPHRASES = [
    "my mum in Nairobi still has not received the money I sent yesterday",
    "which details do I need for a bank payout in Lagos",
    "there is a loan on my file that is not mine, what now",
    "why did I get fewer cedis than the rate on Google",
    "can I pay into a mobile money account in Kumasi from London",
    "I sent USDC to the wrong wallet, can you get it back",
    "what ID do you accept to open an account",
    "stop a payment that already went through",
    "new to the US, how do I start building credit",
    "template for writing to Experian about a mistake",
    "what matters most for a FICO score",
    "plan to get my score above 700 this year",
    "how fast is a transfer from a British bank account",
    "network fees for sending tether",
    "how long until the bureau answers my dispute",
    "how much of my card limit should I use",
    "does paying rent on time help my credit",
    "payout bounced back to me because of a limit",
    "bank verification number for Nigerian customers",
    "when will the naira arrive in my GTBank account",
    "how many days for a card refund to show",
    "can my coach see all my transactions",
    "will looking at my own credit report lower it",
    "dispute a charge with the bank that issued my card",
    "exchange rate markup on Kenyan shilling transfers",
    "daily limits on M-Pesa receipts",
    "selfie check failed during verification",
    "how do I prove my address",
    "a collection account from years ago is still on my report",
    "late payment removed after I paid in full",
    "is my transfer covered if the recipient name is misspelled",
    "send money to Ghana without a bank account",
    "what happens to my dispute if the bureau verifies the item",
    "hard inquiry versus soft inquiry",
    "how to get a secured credit card",
    "can I hold dollars as a stablecoin in the app",
    "why was my account asked for more documents",
    "steps my action plan recommends first",
    "fee for converting pounds to naira",
    "recipient says the money never reached the wallet",
]


def corpus(n_docs: int, seed: int = 7) -> tuple[list[Any], list[str], int]:
    """(documents, queries, how many leading queries were written rather than drawn from the corpus)."""
    from retrieval.documents import SourceDoc
    from retrieval.kb import load_articles

    rng = random.Random(seed)
    articles = load_articles()
    sentences = [s.strip() for a in articles for s in re.split(r"(?<=[.!?])\s+", a.text) if len(s.split()) > 4]
    users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)]
    docs = list(articles)
    for i in range(n_docs):
        text = " ".join(rng.sample(sentences, rng.randint(3, 7)))
        docs.append(SourceDoc(source_id=f"syn-{i:06d}", doc_type="document", user_id=rng.choice(users),
                              title=f"Customer note {i}", text=text))
    queries = [q for q, _ in __import__("tests.integration.search.labelled", fromlist=["LABELLED"]).LABELLED]
    queries += PARAPHRASES
    written = len(queries)
    queries += [" ".join(rng.choice(sentences).split()[:10]) for _ in range(400)]
    return docs, queries, written


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p)) if values else 0.0


async def run(n_docs: int, n_queries: int, concurrency: int) -> dict[str, Any]:
    from guards.redaction import redact
    from retrieval.encoder import encoder_from_settings
    from retrieval.ingest import Ingestor
    from retrieval.service import KnowledgeRetriever
    from retrieval.sources import ListSource, Record
    from stores.registry import connect
    from stores.scope import RowScope
    from stores.search import SearchStore
    from stores.search.catalog import CHUNKS

    stores = await connect(("search", "cache"))
    prefix = f"kredete-bench-{uuid.uuid4().hex[:6]}"
    search = SearchStore(stores.settings.opensearch_url.get_secret_value(), prefix=prefix)
    await search.connect()
    out: dict[str, Any] = {"docs": n_docs, "queries": n_queries, "concurrency": concurrency}
    try:
        encoder = encoder_from_settings()  # KREDETE_ENCODER (bench/encoder.py compares them)
        docs, queries, n_written = corpus(n_docs)
        n_written = min(n_written, n_queries)
        queries = queries[:n_queries]

        # --- ingestion vs raw encode on the same chunk texts ---------------------------------------
        ingestor = Ingestor(search, encoder, redact=redact, batch_docs=64)
        await ingestor.ensure_indexes()
        report = await ingestor.run(ListSource("bench", [Record(d.source_key, [d]) for d in docs]), resume=False)
        chunk_texts = []
        for d in docs:
            chunk_texts += [c.embedding_text() for c in ingestor.chunker.split(d)]
        t = time.perf_counter()
        encoder.encode_sync(chunk_texts)
        raw_s = time.perf_counter() - t
        out["ingest"] = {"chunks": report.chunks_indexed, "seconds": report.seconds,
                         "chunks_per_s": round(report.chunks_per_s, 1),
                         "embed_share": round(report.embed_seconds / report.seconds, 3),
                         "raw_encode_chunks_per_s": round(len(chunk_texts) / raw_s, 1),
                         "ratio_to_ceiling": round(report.chunks_per_s / (len(chunk_texts) / raw_s), 3)}

        # --- recall@10 of the HNSW index against exact search ---------------------------------------
        retriever = KnowledgeRetriever(search, encoder, cache=stores.cache)
        method = await retriever.index_method()
        out["engine"] = {**method.body()["parameters"], "engine": method.engine, "space_type": method.space_type,
                         "ef_search": retriever.config.ef_search, "model": encoder.name, "dim": encoder.dim}
        s = retriever.searcher
        alias = search.index_name(CHUNKS)
        await search.os.indices.refresh(index=alias)
        vecs = await encoder.embed_documents(queries)
        some_user = docs[-1].user_id
        from stores.search.knn import scope_filter

        recalls, filtered = [], []
        for v in vecs:
            approx = {h.id for h in await s.knn(v.tolist(), 10, None)}
            exact = {h.id for h in await s.exact(v.tolist(), 10, None)}
            recalls.append(len(approx & exact) / 10)
            flt = scope_filter(RowScope.users(some_user))
            fa = {h.id for h in await s.knn(v.tolist(), 10, flt)}
            fe = {h.id for h in await s.exact(v.tolist(), 10, flt)}
            filtered.append(len(fa & fe) / max(1, len(fe)))
        out["recall_at_10"] = round(statistics.mean(recalls), 4)
        out["recall_at_10_filtered"] = round(statistics.mean(filtered), 4)
        out["recall_at_10_written_queries"] = {"queries": n_written,
                                               "all": round(statistics.mean(recalls[:n_written]), 4),
                                               "filtered": round(statistics.mean(filtered[:n_written]), 4)}
        rest = recalls[n_written:]
        out["recall_at_10_corpus_queries"] = {"queries": len(rest),
                                              "all": round(statistics.mean(rest), 4) if rest else None}

        # --- cold: no query cache, so each latency includes embedding the query ---------------------
        scope = RowScope.users(some_user)
        cold = KnowledgeRetriever(search, encoder)  # a bare SearchStore: no Redis cache
        await cold.index_method()
        cold_out: dict[str, Any] = {}
        for mode in ("knn", "hybrid"):
            lat = []
            for q in queries:
                t = time.perf_counter()
                await cold.search(q, scope, k=10, mode=mode)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t) * 1000)
            cold_out[f"{mode}/minmax"] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2)}
        out["latency_cold_with_embedding"] = cold_out

        # --- warm: query vectors already cached in Redis (embedding excluded), as for repeated queries --
        for q in queries:
            await retriever.search(q, scope, k=10, mode="knn")
        modes: dict[str, Any] = {}
        for mode, fusion in (("knn", "minmax"), ("bm25", "minmax"), ("hybrid", "minmax"), ("hybrid", "rrf")):
            lat = []
            for q in queries:
                t = time.perf_counter()
                await retriever.search(q, scope, k=10, mode=mode, fusion=fusion)
                lat.append((time.perf_counter() - t) * 1000)
            sem = asyncio.Semaphore(concurrency)

            async def one(q: str, mode: str = mode, fusion: str = fusion, sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    await retriever.search(q, scope, k=10, mode=mode, fusion=fusion)  # type: ignore[arg-type]

            t = time.perf_counter()
            await asyncio.gather(*(one(q) for q in queries))
            qps = len(queries) / (time.perf_counter() - t)
            modes[f"{mode}/{fusion}"] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                                         "qps": round(qps, 1)}
        out["latency"] = modes
        out["latency_note"] = ("latency: query vector from the Redis cache (embedding excluded, Redis GET included); "
                               "latency_cold_with_embedding: no cache, query embedding included")
        t = time.perf_counter()
        for q in queries[:50]:
            await encoder.embed_query(q)
        out["query_encode_ms"] = round((time.perf_counter() - t) * 1000 / min(50, len(queries)), 2)
    finally:
        await search.os.indices.delete(index=f"{prefix}-*", expand_wildcards="all", ignore_unavailable=True)
        tpl = await search.os.indices.get_index_template(name=f"{prefix}-*", ignore=404)
        for t_ in tpl.get("index_templates", []):
            await search.os.indices.delete_index_template(name=t_["name"])
        await search.close()
        await stores.close()
    return out


async def compare_cluster(n_docs: int, n_queries: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """kNN and hybrid p50 and QPS on the ha profile's three-node cluster and on the single node, one run.

    The corpus is embedded once, indexed on the single node (replicas 0) and copied, vectors included, to the
    cluster (replicas 1: every shard on two nodes). Query vectors are computed beforehand (as a warm cache),
    so both sides run exactly the same searches; rounds alternate single / cluster to spread the machine's
    load drift over both.
    """
    from config import ports
    from guards.redaction import redact
    from kredete import stack
    from kredete.stack.opensearch_cluster import SearchCluster
    from retrieval.encoder import encoder_from_settings
    from retrieval.ingest import Ingestor
    from retrieval.service import KnowledgeRetriever
    from retrieval.sources import ListSource, Record
    from stores.scope import RowScope
    from stores.search import SearchStore
    from stores.search.catalog import CHUNKS
    from stores.search.indexes import IndexManager

    t = time.perf_counter()
    stack.up(["opensearch"], profile_name="default")
    stack.up(["opensearch"], profile_name="ha")
    cluster = SearchCluster()
    up_s = time.perf_counter() - t
    prefix = f"kredete-bench-{uuid.uuid4().hex[:6]}"
    single = await SearchStore(f"http://127.0.0.1:{ports.OPENSEARCH}", prefix=prefix, replicas=0).connect()
    multi = await SearchStore(cluster.url(), prefix=prefix, replicas=1).connect()
    out: dict[str, Any] = {"docs": n_docs, "queries": n_queries, "concurrency": concurrency, "rounds": rounds,
                           "memory_mb": cluster.memory_mb(), "stack_up_s": round(up_s, 1)}
    try:
        encoder = encoder_from_settings()  # KREDETE_ENCODER (bench/encoder.py compares them)
        docs, queries, _ = corpus(n_docs)
        queries = queries[:n_queries]
        ingestor = Ingestor(single, encoder, redact=redact, batch_docs=64)
        await ingestor.ensure_indexes()
        await ingestor.run(ListSource("bench", [Record(d.source_key, [d]) for d in docs]), resume=False)
        # the same chunks and vectors into the cluster's index (its own generation, replicas from the store)
        spec = ingestor.spec
        await IndexManager(multi).ensure(spec)
        src, dst = single.index_name(CHUNKS), multi.index_name(CHUNKS)
        await single.os.indices.refresh(index=src)
        copied = 0
        res = await single.os.search(index=src, body={"size": 500, "sort": ["_doc"]}, scroll="2m")
        while res["hits"]["hits"]:
            lines: list[dict[str, Any]] = []
            for h in res["hits"]["hits"]:
                lines += [{"index": {"_index": dst, "_id": h["_id"]}}, h["_source"]]
            bulk = await multi.os.bulk(body=lines, request_timeout=120)
            assert not bulk.get("errors"), "copy to the cluster failed"
            copied += len(res["hits"]["hits"])
            res = await single.os.scroll(scroll_id=res["_scroll_id"], scroll="2m")
        await multi.os.indices.refresh(index=dst)
        await multi.cluster_health(wait_for="green", timeout_s=300)
        n_single = (await single.os.count(index=src))["count"]
        n_multi = (await multi.os.count(index=dst))["count"]
        assert n_single == n_multi == copied, (n_single, n_multi, copied)
        out["chunks"] = n_single
        shards = await multi.os.cat.shards(index=dst, format="json", h="prirep,node")
        out["cluster_copies"] = sorted(f"{s['prirep']}@{s['node']}" for s in shards)

        vectors = {q: v.tolist() for q, v in zip(queries, await encoder.embed_documents(queries), strict=True)}

        class Precomputed:
            name, dim = encoder.name, encoder.dim

            async def embed_query(self, q: str) -> Any:
                return np.asarray(vectors[q])

        scope = RowScope.users(docs[-1].user_id)
        retrievers = {}
        for name, store in (("single", single), ("cluster", multi)):
            r = KnowledgeRetriever(store, encoder)
            await r.index_method()
            r.encoder = Precomputed()  # type: ignore[assignment]
            retrievers[name] = r
            for q in queries[:10]:  # warm the node caches alike
                await r.search(q, scope, k=10, mode="hybrid")

        samples: dict[str, dict[str, list[float]]] = {n: {"knn_ms": [], "hybrid_ms": [], "knn_qps": [],
                                                           "hybrid_qps": []} for n in retrievers}
        for _ in range(rounds):
            for name, r in retrievers.items():
                for mode in ("knn", "hybrid"):
                    for q in queries:
                        t = time.perf_counter()
                        await r.search(q, scope, k=10, mode=mode)  # type: ignore[arg-type]
                        samples[name][f"{mode}_ms"].append((time.perf_counter() - t) * 1000)
                    sem = asyncio.Semaphore(concurrency)

                    async def one(q: str, r: Any = r, mode: str = mode, sem: asyncio.Semaphore = sem) -> None:
                        async with sem:
                            await r.search(q, scope, k=10, mode=mode)

                    t = time.perf_counter()
                    await asyncio.gather(*(one(q) for q in queries))
                    samples[name][f"{mode}_qps"].append(len(queries) / (time.perf_counter() - t))
        for name, m in samples.items():
            out[name] = {"knn_p50_ms": round(pct(m["knn_ms"], 50), 2), "knn_p99_ms": round(pct(m["knn_ms"], 99), 2),
                         "hybrid_p50_ms": round(pct(m["hybrid_ms"], 50), 2),
                         "hybrid_p99_ms": round(pct(m["hybrid_ms"], 99), 2),
                         "knn_qps": round(statistics.median(m["knn_qps"]), 1),
                         "hybrid_qps": round(statistics.median(m["hybrid_qps"]), 1)}
        out["cluster_over_single"] = {k: round(out["cluster"][k] / out["single"][k], 2) for k in out["single"]}
        out["loadavg"] = [f"{x:.1f}" for x in __import__("os").getloadavg()]
    finally:
        for store in (single, multi):
            await store.os.indices.delete(index=f"{prefix}-*", expand_wildcards="all", ignore_unavailable=True)
            tpl = await store.os.indices.get_index_template(name=f"{prefix}-*", ignore=404)
            for t_ in tpl.get("index_templates", []):
                await store.os.indices.delete_index_template(name=t_["name"])
            await store.close()
    return out


def show_cluster(res: dict[str, Any]) -> None:
    t = Table(title=f"three-node cluster vs single node ({res['chunks']} chunks, {res['queries']} queries, "
                    f"{res['rounds']} rounds, c={res['concurrency']}, load {' '.join(res['loadavg'])})")
    for col in ("", "single node (0 replicas)", "3 nodes (1 replica)", "cluster / single"):
        t.add_column(col, justify="right")
    for key, label in (("knn_p50_ms", "kNN p50 ms"), ("hybrid_p50_ms", "hybrid p50 ms"), ("knn_qps", "kNN QPS"),
                       ("hybrid_qps", "hybrid QPS")):
        t.add_row(label, f"{res['single'][key]:.1f}", f"{res['cluster'][key]:.1f}",
                  f"{res['cluster_over_single'][key]:.2f}")
    Console().print(t)
    Console().print(f"cluster memory (RSS) {res['memory_mb']} MB, {sum(res['memory_mb'].values()):.0f} MB in all")


def show(res: dict[str, Any]) -> None:
    console = Console()
    t = Table(title=f"retrieval benchmark ({res['docs']} synthetic docs + KB, {res['queries']} queries)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    ing = res["ingest"]
    written = res["recall_at_10_written_queries"]
    t.add_row("recall@10 (HNSW vs exact), all queries", f"{res['recall_at_10']:.3f}")
    t.add_row("recall@10, scope-filtered, all queries", f"{res['recall_at_10_filtered']:.3f}")
    t.add_row(f"recall@10, {written['queries']} written queries (not from the corpus) / filtered",
              f"{written['all']:.3f} / {written['filtered']:.3f}")
    corpus_q = res["recall_at_10_corpus_queries"]
    if corpus_q["all"] is not None:
        t.add_row(f"recall@10, {corpus_q['queries']} corpus-sentence queries", f"{corpus_q['all']:.3f}")
    for mode, m in res["latency_cold_with_embedding"].items():
        t.add_row(f"{mode} p50 / p99 ms, cold: no cache, query embedding included",
                  f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f}")
    for mode, m in res["latency"].items():
        t.add_row(f"{mode} p50 / p99 ms, QPS (c={res['concurrency']}), warm: cached vector, embedding excluded",
                  f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f}, {m['qps']:.0f}")
    t.add_row("query encode alone (uncached) ms", f"{res['query_encode_ms']:.1f}")
    t.add_row("ingest chunks/s (redact+chunk+embed+index)", f"{ing['chunks_per_s']:.0f}")
    t.add_row("raw model.encode chunks/s (ceiling)", f"{ing['raw_encode_chunks_per_s']:.0f}")
    t.add_row("ingest / ceiling", f"{ing['ratio_to_ceiling']:.2f}")
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--cluster", action="store_true", help="three-node cluster vs single node instead")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.cluster:
        res = asyncio.run(compare_cluster(args.docs, args.queries, args.concurrency, args.rounds))
        CLUSTER_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        CLUSTER_RESULTS.write_text(json.dumps(res, indent=2) + "\n")
        show_cluster(res)
        return
    res = asyncio.run(run(args.docs, args.queries, args.concurrency))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    show(res)


if __name__ == "__main__":
    main()
