"""Encoder benchmark (issue 20): torch vs ONNX vs ONNX int8 for all-MiniLM-L6-v2 on CPU.

    python -m bench.encoder [--docs 300] [--rounds 3] [--threads 1] [--queries N]

* Quality: the retrieval eval (evals/retrieval_eval.py: the evals KB and its labelled queries), recall@10 and
  nDCG@10 per mode for each encoder, each in its own evals index.
* Raw encode (batch size `KREDETE_ENCODER_BATCH_SIZE`): chunks/s of `encode_sync` on the chunk texts of the
  benchmark corpus (bench.retrieval's KB plus synthetic notes, chunked as ingestion does), per core
  (`--threads`, default 1), both per wall-clock second and per CPU second of the process (`time.process_time`:
  on a machine other jobs load, wall-clock rates measure the neighbours as much as the encoder). The encoders
  are timed in turn, `--rounds` times (interleaved, so a busy neighbour slows all of them alike); the median is
  reported, and the speed-up is the median of each round's ratio to torch.
* Worker pool: onnx-int8 spread over one worker process per core (`KREDETE_ENCODER_WORKERS`, one ONNX Runtime
  thread each) against one process running as many threads, wall-clock, interleaved alike.
* Ingestion: `Ingestor.run` (redact, chunk, embed, bulk index into OpenSearch) of the same corpus into a
  throw-away index per encoder, chunks/s against the raw encode of the same chunks measured right after.
Results: bench/results/encoder.json and a table. Needs the local stack's OpenSearch (`kredete stack up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "encoder.json"
KINDS = ("torch", "onnx", "onnx-int8")
#: The eval modes whose vectors the encoder decides (bm25 does not depend on it).
VECTOR_MODES = ("knn", "hybrid-minmax", "hybrid-rrf")


def chunk_texts(docs: list[Any]) -> list[str]:
    from retrieval.chunking import Chunker

    chunker = Chunker()
    return [c.embedding_text() for d in docs for c in chunker.split(d)]


async def quality(kind: str, limit: int | None) -> dict[str, Any]:
    from config.settings import resolve
    from evals import retrieval_eval

    res = await retrieval_eval.run(resolve().model_copy(update={"encoder": kind}), limit=limit)
    return {mode: {k: v for k, v in m.items() if k != "latency"} for mode, m in res["modes"].items()}


def raw_rates(encoders: dict[str, Any], texts: list[str], rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per encoder: chunks per wall-clock second and per CPU second of this process, one of each per round."""
    rates: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in encoders}
    for _ in range(rounds):
        for kind, enc in encoders.items():
            t, c = time.perf_counter(), time.process_time()
            enc.encode_sync(texts)
            rates[kind][0].append(len(texts) / (time.perf_counter() - t))
            rates[kind][1].append(len(texts) / (time.process_time() - c))
    return rates


def median_ratio(runs: list[float], base: list[float]) -> float:
    """The median of per-round ratios (each round's pair ran under the same neighbours' load)."""
    return round(statistics.median(r / b for r, b in zip(runs, base, strict=True)), 2)


async def ingestion(kind: str, encoder: Any, docs: list[Any], texts: list[str]) -> dict[str, Any]:
    from config.settings import resolve
    from guards.redaction import redact
    from retrieval.ingest import Ingestor
    from retrieval.sources import ListSource, Record
    from stores.search import SearchStore

    store = SearchStore(resolve().opensearch_url.get_secret_value(), prefix=f"kredete-bench-enc-{uuid.uuid4().hex[:6]}")
    await store.connect()
    try:
        ingestor = Ingestor(store, encoder, redact=redact, batch_docs=64)
        await ingestor.ensure_indexes()
        report = await ingestor.run(ListSource("bench", [Record(d.source_key, [d]) for d in docs]), resume=False)
        t = time.perf_counter()
        encoder.encode_sync(texts)
        raw = len(texts) / (time.perf_counter() - t)
        return {"chunks": report.chunks_indexed, "seconds": report.seconds,
                "embed_seconds": round(report.embed_seconds, 2),
                "chunks_per_s": round(report.chunks_per_s, 1), "raw_encode_chunks_per_s": round(raw, 1),
                "ratio_to_raw": round(report.chunks_per_s / raw, 3)}
    finally:
        await store.os.indices.delete(index=f"{store.prefix}-*", expand_wildcards="all", ignore_unavailable=True)
        await store.close()


async def run(n_docs: int, rounds: int, threads: int, queries: int | None) -> dict[str, Any]:
    from bench.retrieval import corpus
    from config.settings import Settings
    from retrieval.encoder import make_encoder

    console = Console(stderr=True)
    docs, _, _ = corpus(n_docs)
    texts = chunk_texts(docs)
    out: dict[str, Any] = {"docs": len(docs), "chunks": len(texts), "threads": threads, "rounds": rounds,
                           "encoders": {}}
    batch = Settings().encoder_batch_size
    out["batch_size"] = batch
    encoders = {}
    for kind in KINDS:
        with console.status(f"loading {kind}") as status:
            encoders[kind] = make_encoder(kind, threads=threads, batch_size=batch, workers=1, step=status.update)
    for kind, enc in encoders.items():
        enc.encode_sync(texts[:64])  # warm up
        out["encoders"][kind] = {"name": enc.name}
    console.print(f"raw encode: {len(texts)} chunks x {rounds} rounds")
    for kind, (wall, cpu) in raw_rates(encoders, texts, rounds).items():
        e = out["encoders"][kind]
        e["raw_chunks_per_s_runs"] = [round(x, 1) for x in wall]
        e["raw_chunks_per_s"] = round(statistics.median(wall), 1)
        e["raw_chunks_per_s_per_core"] = round(statistics.median(wall) / threads, 1)
        e["raw_chunks_per_cpu_s_runs"] = [round(x, 1) for x in cpu]
        e["raw_chunks_per_cpu_s"] = round(statistics.median(cpu), 1)
    base = out["encoders"]["torch"]
    for e in out["encoders"].values():
        e["speedup_vs_torch"] = median_ratio(e["raw_chunks_per_s_runs"], base["raw_chunks_per_s_runs"])
        e["speedup_vs_torch_cpu"] = median_ratio(e["raw_chunks_per_cpu_s_runs"], base["raw_chunks_per_cpu_s_runs"])
    for kind, enc in encoders.items():
        console.print(f"ingestion: {kind}")
        out["encoders"][kind]["ingest"] = await ingestion(kind, enc, docs, texts)
    out["pool"] = await pool(docs, texts, rounds, batch, console)
    console.print("profile: onnx-int8")
    out["int8_profile"] = op_profile(texts, batch)
    del encoders
    for kind in KINDS:
        console.print(f"retrieval eval: {kind}")
        out["encoders"][kind]["quality"] = await quality(kind, queries)
    ref = out["encoders"]["torch"]["quality"]
    for e in out["encoders"].values():
        e["quality_delta_vs_torch"] = {
            mode: {m: round(e["quality"][mode][m] - ref[mode][m], 4) for m in ("recall@10", "ndcg@10")}
            for mode in VECTOR_MODES if mode in e["quality"]}
    return out


def op_profile(texts: list[str], batch: int) -> dict[str, Any]:
    """Where one onnx-int8 encode of `texts` spends its time (one thread): tokenising and padding in Python, and
    each ONNX op type's share of the session's time (ONNX Runtime's own profiler)."""
    import collections
    import tempfile

    import onnxruntime as ort

    from retrieval.onnx_encoder import OnnxEncoder, mean_pool

    enc = OnnxEncoder(quantize=True, batch_size=batch, threads=1, workers=1)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_profiling = True
        opts.profile_file_prefix = f"{tmp}/ort"
        session = ort.InferenceSession(str(enc.model_file), opts, providers=["CPUExecutionProvider"])
        phases = collections.Counter()
        c = time.process_time()
        encodings = enc.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        phases["tokenise"] += time.process_time() - c
        for start in range(0, len(order), batch):
            c = time.process_time()
            feed = enc._arrays([encodings[i] for i in order[start:start + batch]])
            phases["pad"] += time.process_time() - c
            c = time.process_time()
            hidden = session.run(None, feed)[0]
            phases["onnx runtime"] += time.process_time() - c
            c = time.process_time()
            mean_pool(hidden, feed["attention_mask"])
            phases["pool"] += time.process_time() - c
        events = json.loads(Path(session.end_profiling()).read_text())
    ops: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            ops[e["args"]["op_name"]] += e["dur"]
    total_ops, total = sum(ops.values()), sum(phases.values())
    return {"cpu_seconds": round(total, 2),
            "phases_pct": {k: round(100 * v / total, 1) for k, v in phases.items()},
            "onnx_ops_pct": {k: round(100 * v / total_ops, 1) for k, v in ops.most_common() if v / total_ops >= 0.001}}


async def pool(docs: list[Any], texts: list[str], rounds: int, batch: int, console: Console) -> dict[str, Any]:
    """onnx-int8 on every core: worker processes of one thread each, against one process with as many threads."""
    from retrieval.onnx_encoder import OnnxEncoder, cpu_count

    cores = cpu_count()
    setups = {f"{cores} workers x 1 thread": OnnxEncoder(quantize=True, batch_size=batch, threads=1, workers=cores),
              f"1 process x {cores} threads": OnnxEncoder(quantize=True, batch_size=batch, threads=cores, workers=1)}
    try:
        for enc in setups.values():
            enc.encode_sync(texts)  # warm up (starts the pool)
        console.print(f"worker pool vs threads: {rounds} rounds")
        res: dict[str, Any] = {"cores": cores}
        for name, (wall, _cpu) in raw_rates(setups, texts, rounds).items():
            res[name] = {"raw_chunks_per_s_runs": [round(x, 1) for x in wall],
                         "raw_chunks_per_s": round(statistics.median(wall), 1)}
        names = list(setups)
        res["pool_speedup_vs_threads"] = median_ratio(res[names[0]]["raw_chunks_per_s_runs"],
                                                      res[names[1]]["raw_chunks_per_s_runs"])
        for name, enc in setups.items():
            console.print(f"ingestion: onnx-int8, {name}")
            res[name]["ingest"] = await ingestion("onnx-int8", enc, docs, texts)
        return res
    finally:
        for enc in setups.values():
            enc.close()


def show(res: dict[str, Any]) -> None:
    t = Table(title=f"encoders: {res['chunks']} chunks, {res['threads']} thread(s), median of {res['rounds']}")
    t.add_column("")
    for kind in res["encoders"]:
        t.add_column(kind, justify="right")
    rows: list[tuple[str, Any]] = [
        ("raw chunks/s per core (wall)", lambda e: f"{e['raw_chunks_per_s_per_core']:.1f}"),
        ("speed-up vs torch (wall)", lambda e: f"{e['speedup_vs_torch']:.2f}x"),
        ("raw chunks per CPU second", lambda e: f"{e['raw_chunks_per_cpu_s']:.1f}"),
        ("speed-up vs torch (CPU)", lambda e: f"{e['speedup_vs_torch_cpu']:.2f}x"),
        ("ingest chunks/s", lambda e: f"{e['ingest']['chunks_per_s']:.1f}"),
        ("ingest / raw encode", lambda e: f"{e['ingest']['ratio_to_raw']:.2f}"),
    ]
    for mode in VECTOR_MODES:
        def cell(e: dict[str, Any], mode: str = mode) -> str:
            q = e["quality"][mode]
            return f"{q['recall@10']:.4f} / {q['ndcg@10']:.4f}"

        rows.append((f"{mode} recall@10 / nDCG@10", cell))
    for label, cell in rows:
        t.add_row(label, *(cell(e) for e in res["encoders"].values()))
    Console().print(t)
    p = Table(title=f"onnx-int8 on {res['pool']['cores']} cores (wall clock)")
    for col in ("", "raw chunks/s", "ingest chunks/s", "ingest / raw encode"):
        p.add_column(col, justify="right")
    for name, r in res["pool"].items():
        if isinstance(r, dict):
            p.add_row(name, f"{r['raw_chunks_per_s']:.1f}", f"{r['ingest']['chunks_per_s']:.1f}",
                      f"{r['ingest']['ratio_to_raw']:.2f}")
    Console().print(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300, help="synthetic notes besides the KB articles")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="cores per encoder (per-core rates divide by it)")
    ap.add_argument("--queries", type=int, default=None, help="eval queries (default: all)")
    args = ap.parse_args()
    res = asyncio.run(run(args.docs, args.rounds, args.threads, args.queries))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    show(res)


if __name__ == "__main__":
    main()
