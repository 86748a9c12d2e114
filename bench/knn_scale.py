"""kNN at size (issue 20): HNSW recall@10 against exact search at 100k+ chunks, with the scope filter inside
the kNN clause, and query latency, per `ef_search` and per graph (`m`).

    .venv/bin/python -m bench.knn_scale [--users 50000] [--min-chunks 100000] [--queries 200] [--m 16 32]

The corpus is the credit records of the first users the seed would make (`kredete seed`'s people and credit
documents, built in memory from the same seed): the newest version of each credit report, every dispute and
every action plan, converted, chunked, redacted, embedded and indexed by the real ingestion pipeline into an
index prefix of its own (`kredete-knnscale`). It takes users in seed order until the chunks reach
`--min-chunks` (at most `--users`). Ingestion resumes after an interruption (its checkpoints live in that
prefix's `ingest-state` index); `--fresh` starts over.

Each query is run against the HNSW index and against exact brute-force scoring (`knn_score`) under the same
filter. Scopes: a support agent (no filter), a customer (their `user_id` inside the kNN clause) and a
dispute reviewer (`doc_type` = dispute). Latency is the OpenSearch round trip of the kNN query (the query
vector is computed beforehand). The index is measured as ingested (several segments, each with its own
graph), and each `--m` as a copy of the same vectors (`_reindex`) merged to one segment, so graphs compare at
the same segment count and hold the same chunks.
Results: bench/results/knn_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
EF_SEARCH = (16, 32, 64, 100, 200, 400)


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


async def measure(search: Any, index: str, vectors: list[list[float]], scopes: dict[str, list[Any]],
                  ef_values: tuple[int, ...]) -> dict[str, Any]:
    """Recall@10 and latency of every scope at every ef_search on one index."""
    from stores.search.knn import exact_knn_query, knn_query

    out: dict[str, Any] = {}
    for scope, filters in scopes.items():
        truth = [(await ids(search, index, exact_knn_query("embedding", v, filter=f)))[0]
                 for v, f in zip(vectors, filters, strict=True)]
        rows: dict[str, Any] = {}
        for ef in ef_values:
            recalls, by_id, lat = [], [], []
            for v, f, exact in zip(vectors, filters, truth, strict=True):
                got, ms = await ids(search, index, knn_query("embedding", v, 10, filter=f, ef_search=ef))
                lat.append(ms)
                if exact:
                    recalls.append(tie_aware_recall(got, exact))
                    by_id.append(len({i for i, _ in got} & {i for i, _ in exact}) / len(exact))
            rows[str(ef)] = {"recall_at_10": round(statistics.mean(recalls), 4) if recalls else None,
                             "recall_at_10_by_id": round(statistics.mean(by_id), 4) if by_id else None,
                             "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2)}
        out[scope] = rows
    return out


async def copy_with_m(search: Any, source: str, m: int, console: Console) -> tuple[str, float]:
    """The same chunks in an index whose graph has this `m` (vectors copied, not re-embedded)."""
    from stores.search.mappings import KnnMethod, chunks_body

    name = f"{PREFIX}-graph-m{m}"
    mapping = await search.os.indices.get_mapping(index=source)
    dim = next(iter(mapping.values()))["mappings"]["properties"]["embedding"]["dimension"]
    await search.os.indices.delete(index=name, ignore_unavailable=True)
    await search.os.indices.create(index=name, body=chunks_body(dim, KnnMethod(m=m)))
    t = time.perf_counter()
    with console.status(f"copying the vectors into a graph with m={m}"):
        await search.os.reindex(body={"source": {"index": source}, "dest": {"index": name}},
                                wait_for_completion=True, request_timeout=7200, refresh=True)
        await search.os.indices.forcemerge(index=name, max_num_segments=1, request_timeout=7200)
    return name, time.perf_counter() - t


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    from bench.retrieval import PARAPHRASES
    from guards.redaction import redact
    from retrieval.encoder import encoder_from_settings
    from retrieval.ingest import Ingestor
    from retrieval.sources import ListSource
    from stores.registry import connect
    from stores.scope import RowScope
    from stores.search import SearchStore
    from stores.search.catalog import CHUNKS
    from stores.search.knn import scope_filter
    from stores.search.mappings import KnnMethod

    stores = await connect(("search",))
    search = await SearchStore(stores.settings.opensearch_url.get_secret_value(), prefix=PREFIX).connect()
    try:
        encoder = encoder_from_settings()
        ingestor = Ingestor(search, encoder, redact=redact, batch_docs=64, method=KnnMethod(m=args.m[0]))
        if args.fresh:
            await ingestor.reset()
        await ingestor.ensure_indexes()
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
        out: dict[str, Any] = {
            "users": n_users, "records": len(records), "chunks_in_corpus": n_chunks, "chunks_indexed": indexed,
            "encoder": encoder.name,
            "ingest": {"resumed_after": report.resumed_after, "chunks_this_run": report.chunks_indexed,
                       "seconds_this_run": round(report.seconds, 1),
                       "chunks_per_s": round(report.chunks_per_s, 1)},
        }

        rng = random.Random(SEED)
        texts = list(PARAPHRASES)
        while len(texts) < args.queries:  # the rest: customers' words about their own records
            texts.append(rng.choice(["why is this account on my report", "my dispute about a late payment",
                                     "what should I pay first to raise my score", "account I do not recognise",
                                     "status of the bureau investigation", "credit card utilisation advice",
                                     "collection account removed after payment", "mobile money loan history"])
                         + f" {rng.randint(1, 5000)}")
        texts = texts[:args.queries]
        vectors = [[float(x) for x in v] for v in await encoder.embed_documents(texts)]
        user_ids = sorted({d.user_id for r in records for d in r.docs if d.user_id})
        customers = [rng.choice(user_ids) for _ in vectors]
        scopes = {
            "staff (no filter)": [None] * len(vectors),
            "customer (own user_id in the kNN clause)": [scope_filter(RowScope.users(u)) for u in customers],
            "dispute reviewer (doc_type = dispute)": [{"term": {"doc_type": "dispute"}}] * len(vectors),
        }
        graphs: dict[str, Any] = {}
        concrete = next(iter((await search.os.indices.get_alias(index=alias)).keys()))
        segments = len({s["segment"] for s in await search.os.cat.segments(index=concrete, format="json")})
        with console.status(f"recall and latency, m={args.m[0]} as ingested"):
            graphs[f"m={args.m[0]}, as ingested ({segments} segments)"] = {
                "index": concrete, "segments": segments,
                "scopes": await measure(search, concrete, vectors, scopes, EF_SEARCH)}
        # Each graph also as a copy merged to one segment: a search visits every segment's graph, so graphs of
        # different m compare only at the same segment count.
        for m in args.m:
            index, build_s = await copy_with_m(search, concrete, m, console)
            with console.status(f"recall and latency, m={m}, one segment"):
                graphs[f"m={m}, one segment"] = {"index": index, "segments": 1, "copy_and_build_s": round(build_s, 1),
                                                 "scopes": await measure(search, index, vectors, scopes, EF_SEARCH)}
            await search.os.indices.delete(index=index, ignore_unavailable=True)
        out["graphs"] = graphs
        out["queries"] = len(vectors)
        return out
    finally:
        await search.close()
        await stores.close()


def show(res: dict[str, Any], console: Console) -> None:
    t = Table(title=f"kNN at {res['chunks_indexed']:,} chunks ({res['users']:,} users, {res['encoder']})")
    for col in ("graph", "scope", "ef_search", "recall@10", "p50 ms", "p99 ms"):
        t.add_column(col)
    for graph, g in res["graphs"].items():
        for scope, rows in g["scopes"].items():
            for ef, r in rows.items():
                t.add_row(graph, scope, ef, str(r["recall_at_10"]), str(r["p50_ms"]), str(r["p99_ms"]))
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50_000, help="at most this many users")
    ap.add_argument("--min-chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--m", type=int, nargs="+", default=[16, 32], help="graphs to measure (the first is ingested)")
    ap.add_argument("--fresh", action="store_true", help="drop the bench's indexes and ingest from scratch")
    args = ap.parse_args()
    console = Console()
    t0 = time.monotonic()
    res = asyncio.run(run(args, console))
    res.update({"seconds": round(time.monotonic() - t0, 1), "machine": {"cpus": __import__("os").cpu_count(),
                "python": platform.python_version()}, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    show(res, console)
    console.print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
