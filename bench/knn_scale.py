"""kNN at size (issue 20): HNSW recall@10 against exact search at 100k+ chunks, with the scope filter inside
the kNN clause, and query latency, per `ef_search` and per graph (engine, `m`, `ef_construction`).

    .venv/bin/python -m bench.knn_scale [--min-chunks 100000] [--queries 200] [--graphs 16:128 32:256 ...]
        [--ef 64 100 200 400] [--ingest-only | --no-ingest]

The corpus is the credit records of the first users the seed would make (`kredete seed`'s people and credit
documents, built in memory from the same seed): the newest version of each credit report, every dispute and
every action plan, converted, chunked, redacted, embedded and indexed by the real ingestion pipeline into an
index prefix of its own (`kredete-knnscale`). It takes users in seed order until the chunks reach
`--min-chunks` (at most `--users`), counted before redaction, so the index can hold fewer (`--min-chunks
100000` indexed 95,012 chunks on 2026-12-07; 107000 then gave 105,199). Ingestion resumes after an
interruption (its checkpoints live in that prefix's `ingest-state` index); `--fresh` starts over; `--no-ingest`
measures what is indexed so far.

Two query sets: `written` (the benchmark's written questions and customers' phrases: far from the templated
records, the harder set) and `in_corpus` (6-16 word windows of randomly chosen indexed chunks). Each query runs
against the HNSW index and against exact brute-force scoring (`knn_score`) under the same filter. Scopes: a
support agent (no filter), a customer (their `user_id` inside the kNN clause) and a dispute reviewer
(`doc_type` = dispute). Latency is the OpenSearch round trip of the kNN query (the query vector is computed
beforehand). The index is measured as ingested (several segments, each with its own graph), and each
`--graphs` entry as a copy of the same vectors (`_reindex`) merged to one segment, so graphs compare at the
same segment count and hold the same chunks. Engines the node cannot run (faiss without its JNI library) are
recorded as skipped.
Results: bench/results/knn_scale.json (bench/results/knn_scale.partial.json after each graph while it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from evals.harness import percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "knn_scale.json"
PREFIX = "kredete-knnscale"
SEED = 42
EF_SEARCH = (32, 64, 100, 200, 400, 800)
#: Filtered scopes reach 0.99-1.0 at any ef_search (few enough documents pass for an exact scan): fewer values.
FILTERED_EF = (100, 400)
#: One-segment copies measured by default: [engine:]m:ef_construction.
STAFF = "staff (no filter)"
DEFAULT_GRAPHS = ("16:128", "16:512", "32:256", "48:512")


def corpus(users: int, min_chunks: int, chunker: Any, console: Console) -> tuple[list[Any], int, int]:
    """Records of the first users of the seed until their chunks reach `min_chunks`: (records, users, chunks)."""
    from kredete.seed.mongo import _UserSeed
    from kredete.seed.people import person
    from retrieval.converters import action_plan_doc, credit_report_doc, dispute_docs
    from retrieval.sources import Record

    records: list[Any] = []
    chunks = 0
    n = 0
    with Progress(TextColumn("[bold]corpus[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("chunks", total=min_chunks)
        while n < users and chunks < min_chunks:
            p = person(SEED, n)
            n += 1
            out = _UserSeed(p, SEED).build().out
            reports = [doc.to_mongo() for doc in out["credit_reports"]]
            superseded = {str(r.get("supersedes")) for r in reports if r.get("supersedes")}
            names = (p.full_name,)
            raws: list[tuple[str, list[Any]]] = []
            raws += [(str(r["_id"]), [credit_report_doc(r)]) for r in reports if str(r["_id"]) not in superseded]
            raws += [(str(c["_id"]), dispute_docs(c, names)) for c in (d.to_mongo() for d in out["dispute_cases"])]
            raws += [(str(a["_id"]), [action_plan_doc(a)]) for a in (d.to_mongo() for d in out["action_plans"])]
            for key, docs in raws:
                records.append(Record(key, docs))
                k = sum(len(chunker.split(d)) for d in docs)
                chunks += k
                progress.advance(task, k)
    return records, n, chunks


async def ids(search: Any, index: str, query: dict[str, Any], k: int = 10) -> tuple[list[tuple[str, float]], float]:
    """(id, score) of the top k, and the round trip in ms."""
    t = time.perf_counter()
    res = await search.os.search(index=index, body={"size": k, "query": query, "_source": False})
    return [(h["_id"], float(h["_score"])) for h in res["hits"]["hits"]], (time.perf_counter() - t) * 1000


def tie_aware_recall(got: list[tuple[str, float]], exact: list[tuple[str, float]]) -> float:
    """Share of the k results that belong in the exact top k: a hit counts when it is one of the exact ids or
    scores at least the exact k-th score (templated records embed to identical vectors, and which of several
    tied documents exact search returns is arbitrary; ann-benchmarks counts by distance the same way)."""
    if not exact:
        return 1.0
    kth = exact[-1][1]
    wanted = {i for i, _ in exact}
    return sum(1 for i, score in got if i in wanted or score >= kth - 1e-6) / len(exact)


def gap_stats(truth: list[list[tuple[str, float]]]) -> dict[str, float | None]:
    """How flat each query's neighbourhood is: the median cosine of the exact 1st, 10th and 100th hit (a
    query far from the corpus sees its 10th and 100th neighbours at almost the same cosine, which is where
    HNSW's greedy walk loses recall)."""
    from stores.search.knn import similarity_from_engine

    def med(rank: int) -> float | None:
        xs = [similarity_from_engine(t[rank - 1][1]) for t in truth if len(t) >= rank]
        return round(statistics.median(xs), 4) if xs else None

    return {"cos_1": med(1), "cos_10": med(10), "cos_100": med(100)}


async def exact_truth(search: Any, index: str, queries: dict[str, Any],
                      concurrency: int = 1) -> dict[str, dict[str, Any]]:
    """Exact top 100 (`knn_score` over the filtered set) of every query of every set and scope."""
    from stores.search.knn import exact_knn_query

    truth: dict[str, dict[str, Any]] = {}
    for qset, q in queries.items():
        truth[qset] = {}
        for scope, filters in q["scopes"].items():
            answers = await gather_limited(concurrency, [
                ids(search, index, exact_knn_query("embedding", v, filter=f), k=100)
                for v, f in zip(q["vectors"], filters, strict=True)])
            truth[qset][scope] = [got for got, _ in answers]
    return truth


async def gather_limited(limit: int, calls: list[Any]) -> list[Any]:
    """Await the calls with at most `limit` in flight, results in order (1: one after another)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def measure(search: Any, index: str, queries: dict[str, Any], truth: dict[str, dict[str, Any]],
                  ef_values: tuple[int, ...], filtered_ef: tuple[int, ...], concurrency: int = 1) -> dict[str, Any]:
    """Recall@10 and latency of every query set and scope at every ef_search (filtered scopes: `filtered_ef`)
    on one index (the exact top 10 come from `truth`, computed once on the source index: a copy holds the
    same ids and vectors)."""
    from stores.search.knn import knn_query, similarity_from_engine

    out: dict[str, Any] = {}
    for qset, q in queries.items():
        out[qset] = {}
        for scope, filters in q["scopes"].items():
            exact_10 = [t[:10] for t in truth[qset][scope]]
            rows: dict[str, Any] = {}
            for ef in (ef_values if scope == STAFF else filtered_ef):
                recalls, by_id, lat, shortfall = [], [], [], []
                answers = await gather_limited(concurrency, [
                    ids(search, index, knn_query("embedding", v, 10, filter=f, ef_search=ef))
                    for v, f in zip(q["vectors"], filters, strict=True)])
                for (got, ms), exact in zip(answers, exact_10, strict=True):
                    lat.append(ms)
                    got = got[:len(exact)]  # a scope with fewer than 10 documents: recall@k over what exists
                    if exact:
                        recalls.append(tie_aware_recall(got, exact))
                        by_id.append(len({i for i, _ in got} & {i for i, _ in exact}) / len(exact))
                        # How much closer the exact top k is, in mean cosine (0 when the sets tie).
                        if got:
                            shortfall.append(statistics.mean(similarity_from_engine(x) for _, x in exact)
                                             - statistics.mean(similarity_from_engine(x) for _, x in got))
                rows[str(ef)] = {"recall_at_10": round(statistics.mean(recalls), 4) if recalls else None,
                                 "recall_at_10_by_id": round(statistics.mean(by_id), 4) if by_id else None,
                                 "mean_cosine_shortfall": round(statistics.mean(shortfall), 5) if shortfall else None,
                                 "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2)}
            out[qset][scope] = rows
    return out


def parse_graph(spec: str) -> tuple[str, int, int]:
    """`[engine:]m:ef_construction` -> (engine, m, ef_construction)."""
    parts = spec.split(":")
    engine = parts.pop(0) if len(parts) == 3 else "lucene"
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"graph {spec!r}: give [engine:]m:ef_construction, e.g. 32:256")
    return engine, int(parts[0]), int(parts[1])


async def copy_graph(search: Any, source: str, engine: str, m: int, ef_construction: int,
                     console: Console) -> tuple[str, float]:
    """The same chunks in an index with this graph (vectors copied, not re-embedded), merged to one segment."""
    from stores.search.mappings import KnnMethod, chunks_body

    name = f"{PREFIX}-graph-{engine}-m{m}-efc{ef_construction}"
    mapping = await search.os.indices.get_mapping(index=source)
    dim = next(iter(mapping.values()))["mappings"]["properties"]["embedding"]["dimension"]
    await search.os.indices.delete(index=name, ignore_unavailable=True)
    method = KnnMethod(engine=engine, m=m, ef_construction=ef_construction)
    await search.os.indices.create(index=name, body=chunks_body(dim, method))
    t = time.perf_counter()
    with console.status(f"copying the vectors into a {engine} graph, m={m}, ef_construction={ef_construction}"):
        await search.os.reindex(body={"source": {"index": source}, "dest": {"index": name}},
                                wait_for_completion=True, request_timeout=7200, refresh=True)
        await search.os.indices.forcemerge(index=name, max_num_segments=1, request_timeout=7200)
    return name, time.perf_counter() - t


def written_queries(n: int, rng: random.Random) -> list[str]:
    """The benchmark's written questions, then customers' phrases about their records (the harder set: far
    from the templated records they search)."""
    from bench.retrieval import PARAPHRASES

    texts = list(PARAPHRASES)
    while len(texts) < n:
        texts.append(rng.choice(["why is this account on my report", "my dispute about a late payment",
                                 "what should I pay first to raise my score", "account I do not recognise",
                                 "status of the bureau investigation", "credit card utilisation advice",
                                 "collection account removed after payment", "mobile money loan history"])
                     + f" {rng.randint(1, 5000)}")
    return texts[:n]


async def corpus_queries(search: Any, index: str, n: int, rng: random.Random) -> list[str]:
    """In-distribution queries: a window of 6-16 words of randomly chosen indexed chunks (their own words, as
    someone quoting a record would type them)."""
    res = await search.os.search(index=index, body={
        "size": n, "_source": ["text"],
        "query": {"function_score": {"query": {"match_all": {}}, "random_score": {"seed": SEED, "field": "_seq_no"}}}})
    out: list[str] = []
    for h in res["hits"]["hits"]:
        words = h["_source"]["text"].split()
        size = rng.randint(6, 16)
        start = rng.randint(0, max(0, len(words) - size))
        out.append(" ".join(words[start:start + size]))
    return out


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    from guards.redaction import redact
    from retrieval.encoder import encoder_from_settings
    from retrieval.ingest import Ingestor
    from retrieval.sources import ListSource
    from stores.registry import connect
    from stores.scope import RowScope
    from stores.search import SearchStore
    from stores.search.catalog import CHUNKS, chunks_spec
    from stores.search.indexes import IndexManager
    from stores.search.knn import scope_filter
    from stores.search.mappings import KnnMethod

    stores = await connect(("search",))
    search = await SearchStore(stores.settings.opensearch_url.get_secret_value(), prefix=PREFIX).connect()
    try:
        encoder = encoder_from_settings()
        # A new index gets --ingest-graph, else the settings' graph (KREDETE_KNN_M / _EF_CONSTRUCTION).
        method = KnnMethod(**dict(zip(("engine", "m", "ef_construction"), args.ingest_graph, strict=True))) \
            if args.ingest_graph else KnnMethod()
        engine, m0, efc0 = method.engine, method.m, method.ef_construction
        meta = await IndexManager(search).meta(chunks_spec())
        if meta and meta.get("knn_method") and not args.fresh:  # resuming: the graph the index was built with
            method = KnnMethod.from_body(meta["knn_method"])
            engine, m0, efc0 = method.engine, method.m, method.ef_construction
        ingestor = Ingestor(search, encoder, redact=redact, batch_docs=64, method=method)
        if args.fresh:
            await ingestor.reset()
        await ingestor.ensure_indexes()
        records: list[Any] = []
        n_users = n_chunks = 0
        report = None
        if not args.no_ingest:
            records, n_users, n_chunks = corpus(args.users, args.min_chunks, ingestor.chunker, console)
            console.log(f"corpus: {n_users:,} users, {len(records):,} records, {n_chunks:,} chunks")
            with Progress(TextColumn("[bold]ingest[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as progress:
                task = progress.add_task("records", total=len(records))
                ingestor.progress = lambda r: progress.update(task, completed=r.records)
                report = await ingestor.run(ListSource("knn-scale", records), resume=True)
        alias = search.index_name(CHUNKS)
        await search.os.indices.refresh(index=alias)
        indexed = (await search.os.count(index=alias))["count"]
        if args.ingest_only:
            return {"chunks_indexed": indexed}
        concrete = next(iter((await search.os.indices.get_alias(index=alias)).keys()))
        have = await search.os.search(index=concrete, body={
            "size": 0, "aggs": {"u": {"terms": {"field": "user_id", "size": 100_000}},
                                "s": {"cardinality": {"field": "source_id", "precision_threshold": 40_000}}}})
        user_ids = sorted(b["key"] for b in have["aggregations"]["u"]["buckets"])
        out: dict[str, Any] = {
            "users": len(user_ids), "documents_about": have["aggregations"]["s"]["value"],
            "corpus": {"users": n_users, "records": len(records), "chunks": n_chunks} if records else None,
            "chunks_indexed": indexed,
            "encoder": encoder.name,
            "ingest": None if report is None else {
                "resumed_after": report.resumed_after, "chunks_this_run": report.chunks_indexed,
                "seconds_this_run": round(report.seconds, 1), "chunks_per_s": round(report.chunks_per_s, 1)},
        }
        rng = random.Random(SEED)
        texts = {"written": written_queries(args.queries, rng),
                 "in_corpus": await corpus_queries(search, concrete, args.queries, rng)}
        # Customers are drawn from the users whose chunks are indexed.
        queries: dict[str, Any] = {}
        for qset, qtexts in texts.items():
            vectors = [[float(x) for x in v] for v in await encoder.embed_documents(qtexts)]
            customers = [rng.choice(user_ids) for _ in vectors]
            queries[qset] = {"vectors": vectors, "scopes": {
                STAFF: [None] * len(vectors),
                "customer (own user_id in the kNN clause)": [scope_filter(RowScope.users(u)) for u in customers],
                "dispute reviewer (doc_type = dispute)": [{"term": {"doc_type": "dispute"}}] * len(vectors),
            }}
        out["queries"] = {qset: len(q["vectors"]) for qset, q in queries.items()}
        out["concurrency"] = args.concurrency
        out["query_examples"] = {qset: t[:3] for qset, t in texts.items()}
        with console.status("exact top 100 of every query (knn_score)"):
            truth = await exact_truth(search, concrete, queries, args.concurrency)
        out["neighbourhood"] = {qset: gap_stats(truth[qset][STAFF]) for qset in queries}

        from kredete.stack.opensearch import OpenSearchServer

        engines = OpenSearchServer().engines()  # faiss needs JNI libraries the Maven-published plugin lacks
        out["engines_available"] = engines
        graphs: dict[str, Any] = {}
        segments = len({s["segment"] for s in await search.os.cat.segments(index=concrete, format="json")})
        with console.status(f"recall and latency, {engine} m={m0} ef_construction={efc0} as ingested"):
            graphs[f"{engine} m={m0} efc={efc0}, as ingested ({segments} segments)"] = {
                "index": concrete, "engine": engine, "m": m0, "ef_construction": efc0, "segments": segments,
                "results": await measure(search, concrete, queries, truth, tuple(args.ef),
                                          tuple(args.filtered_ef), args.concurrency)}
        RESULTS.with_suffix(".partial.json").write_text(json.dumps({**out, "graphs": graphs}, indent=2) + "\n")
        # Each graph also as a copy merged to one segment: a search visits every segment's graph, so graphs
        # compare only at the same segment count.
        for engine_i, m, efc in args.graphs:
            key = f"{engine_i} m={m} efc={efc}, one segment"
            if engines and engine_i not in engines:
                graphs[key] = {"skipped": f"engine {engine_i} is not usable on this node (engines: {engines})"}
                continue
            index, build_s = await copy_graph(search, concrete, engine_i, m, efc, console)
            with console.status(f"recall and latency, {key}"):
                graphs[key] = {"index": index, "engine": engine_i, "m": m, "ef_construction": efc, "segments": 1,
                               "copy_and_build_s": round(build_s, 1),
                               "results": await measure(search, index, queries, truth, tuple(args.ef),
                                                                       tuple(args.filtered_ef), args.concurrency)}
            await search.os.indices.delete(index=index, ignore_unavailable=True)
            RESULTS.with_suffix(".partial.json").write_text(json.dumps({**out, "graphs": graphs}, indent=2) + "\n")
        out["graphs"] = graphs
        return out
    finally:
        await search.close()
        await stores.close()


def show(res: dict[str, Any], console: Console) -> None:
    t = Table(title=f"kNN at {res['chunks_indexed']:,} chunks ({res['users']:,} users, {res['encoder']})")
    for col in ("graph", "queries", "scope", "ef_search", "recall@10", "p50 ms", "p99 ms"):
        t.add_column(col)
    for graph, g in res["graphs"].items():
        if "skipped" in g:
            t.add_row(graph, "", g["skipped"], "", "", "", "")
            continue
        for qset, scopes in g["results"].items():
            for scope, rows in scopes.items():
                for ef, r in rows.items():
                    t.add_row(graph, qset, scope, ef, str(r["recall_at_10"]), str(r["p50_ms"]), str(r["p99_ms"]))
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50_000, help="at most this many users")
    ap.add_argument("--min-chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200, help="queries per set (written, in-corpus)")
    ap.add_argument("--ingest-graph", type=parse_graph, default=None,
                    help="[engine:]m:ef_construction of a new ingested index (default: the settings' "
                         "KREDETE_KNN_M / KREDETE_KNN_EF_CONSTRUCTION; an existing index keeps its own)")
    ap.add_argument("--graphs", type=parse_graph, nargs="*", default=[parse_graph(g) for g in DEFAULT_GRAPHS],
                    help="[engine:]m:ef_construction of each one-segment copy to measure")
    ap.add_argument("--ef", type=int, nargs="+", default=list(EF_SEARCH), help="ef_search values")
    ap.add_argument("--filtered-ef", type=int, nargs="+", default=list(FILTERED_EF),
                    help="ef_search values of the filtered scopes")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="queries in flight (1: latency of one query at a time; more: recall sooner on a busy machine)")
    ap.add_argument("--ingest-only", action="store_true", help="ingest (or resume) and stop; no measurement")
    ap.add_argument("--no-ingest", action="store_true", help="measure the index as it is (a partial ingestion)")
    ap.add_argument("--fresh", action="store_true", help="drop the bench's indexes and ingest from scratch")
    args = ap.parse_args()
    console = Console()
    t0 = time.monotonic()
    res = asyncio.run(run(args, console))
    if args.ingest_only:
        console.print(f"ingested: {res['chunks_indexed']:,} chunks")
        return
    res.update({"seconds": round(time.monotonic() - t0, 1), "machine": {"cpus": os.cpu_count(),
                "python": platform.python_version(), "loadavg_at_end": os.getloadavg()},
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    RESULTS.with_suffix(".partial.json").unlink(missing_ok=True)
    show(res, console)
    console.print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
