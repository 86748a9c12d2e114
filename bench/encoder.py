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
  throw-away index, `--rounds` times per encoder, each between two raw encodes of the same chunks (the ratio
  is to their mean); also the encoder's busy share of the ingestion and raw CPU / ingestion CPU of the process.
* Tries (onnx-int8, one thread, per CPU second): ONNX Runtime session options (`SESSION_TRIES`), and static
  int8 (QDQ, per channel, calibrated on the evals KB's chunks) against the dynamic int8 default, with the
  cosine of its vectors to the float model's.
Results: bench/results/encoder.json (with the CPU, ONNX Runtime version, commit and load averages) and a
table. Needs the local stack's OpenSearch (`kredete stack up --only opensearch`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


async def ingestion(encoder: Any, docs: list[Any], texts: list[str], rounds: int) -> dict[str, Any]:
    """`rounds` ingestions of the corpus, each into a fresh index, each between two raw encodes of the same chunks
    (their mean is that round's raw rate: a neighbour's load changes within seconds). Besides chunks/s and the
    ratio to raw: the encoder's busy share (embedding time / ingestion time: how well the pipeline feeds it)
    and, for an encoder in this process, raw CPU seconds / ingestion CPU seconds of this process, and of this
    process plus the local OpenSearch server (no credit for work overlapped on the other core)."""
    runs = [await _ingest_once(encoder, docs, texts) for _ in range(rounds)]
    mid = sorted(runs, key=lambda r: r["ratio_to_raw"])[len(runs) // 2]
    out = {**mid, "ratio_to_raw_runs": [r["ratio_to_raw"] for r in runs],
           "chunks_per_s_runs": [r["chunks_per_s"] for r in runs],
           "encoder_busy_share": round(statistics.median(r["encoder_busy_share"] for r in runs), 3)}
    if getattr(encoder, "workers", 1) == 1:
        out["cpu_ratio_to_raw"] = round(statistics.median(r["raw_cpu_s"] / r["cpu_s"] for r in runs), 3)
        if all(r["opensearch_cpu_s"] is not None for r in runs):
            out["cpu_ratio_to_raw_with_opensearch"] = round(statistics.median(
                r["raw_cpu_s"] / (r["cpu_s"] + r["opensearch_cpu_s"]) for r in runs), 3)
    return out


async def _ingest_once(encoder: Any, docs: list[Any], texts: list[str]) -> dict[str, Any]:
    from config.settings import resolve
    from guards.redaction import redact
    from retrieval.ingest import Ingestor
    from retrieval.sources import ListSource, Record
    from stores.search import SearchStore

    store = SearchStore(resolve().opensearch_url.get_secret_value(), prefix=f"kredete-bench-enc-{uuid.uuid4().hex[:6]}")
    await store.connect()
    try:
        ingestor = Ingestor(store, encoder, redact=redact)  # the default batch
        await ingestor.ensure_indexes()
        raws = []
        t, c = time.perf_counter(), time.process_time()
        encoder.encode_sync(texts)
        raws.append((time.perf_counter() - t, time.process_time() - c))
        c, search_cpu = time.process_time(), _search_server_cpu()
        report = await ingestor.run(ListSource("bench", [Record(d.source_key, [d]) for d in docs]), resume=False)
        cpu = time.process_time() - c
        search_cpu = None if search_cpu is None else _search_server_cpu() - search_cpu
        t, c = time.perf_counter(), time.process_time()
        encoder.encode_sync(texts)
        raws.append((time.perf_counter() - t, time.process_time() - c))
        raw = statistics.mean(len(texts) / w for w, _ in raws)
        return {"chunks": report.chunks_indexed, "seconds": report.seconds,
                "embed_seconds": round(report.embed_seconds, 2),
                "chunks_per_s": round(report.chunks_per_s, 1), "raw_encode_chunks_per_s": round(raw, 1),
                "ratio_to_raw": round(report.chunks_per_s / raw, 3),
                "encoder_busy_share": round(report.embed_seconds / report.seconds, 3),
                "cpu_s": round(cpu, 2), "raw_cpu_s": round(statistics.mean(c for _, c in raws), 2),
                "opensearch_cpu_s": None if search_cpu is None else round(search_cpu, 2)}
    finally:
        await store.os.indices.delete(index=f"{store.prefix}-*", expand_wildcards="all", ignore_unavailable=True)
        await store.close()


def _search_server_cpu() -> float | None:
    """CPU seconds the local OpenSearch server has used so far (None: not this stack's, or not Linux)."""
    from config.paths import local_dir

    try:
        pid = int((local_dir() / "opensearch" / "server.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict[str, Any]:
    """What the rates depend on: the CPU (its vector instructions decide ONNX Runtime's int8 kernels), the
    libraries, the commit and the neighbours' load."""
    import platform
    import subprocess

    import onnxruntime

    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "onnxruntime": onnxruntime.__version__}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                           if line.startswith("model name"))
        flags = set(next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split())
        info["int8_isa"] = sorted(flags & {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"})
    except (OSError, StopIteration):
        pass
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    info["git"] = head.stdout.strip()
    return info


async def run(n_docs: int, rounds: int, threads: int, queries: int | None) -> dict[str, Any]:
    from bench.retrieval import corpus
    from config.settings import Settings
    from retrieval.encoder import make_encoder

    console = Console(stderr=True)
    docs, _, _ = corpus(n_docs)
    texts = chunk_texts(docs)
    out: dict[str, Any] = {"docs": len(docs), "chunks": len(texts), "threads": threads, "rounds": rounds,
                           "machine": machine(), "started": _utc(), "load_avg_start": _load(), "encoders": {}}
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
        out["encoders"][kind]["ingest"] = await ingestion(enc, docs, texts, rounds)
    out["pool"] = await pool(docs, texts, rounds, batch, console)
    console.print("profile: onnx-int8")
    out["int8_profile"] = op_profile(texts, batch)
    console.print("session options: onnx-int8")
    out["int8_session_options"] = session_options(texts, batch, rounds)
    console.print("static int8 (QDQ, calibrated): onnx-int8")
    out["int8_static_qdq"] = static_int8(texts, batch, rounds)
    del encoders
    for kind in KINDS:
        console.print(f"retrieval eval: {kind}")
        out["encoders"][kind]["quality"] = await quality(kind, queries)
    ref = out["encoders"]["torch"]["quality"]
    for e in out["encoders"].values():
        e["quality_delta_vs_torch"] = {
            mode: {m: round(e["quality"][mode][m] - ref[mode][m], 4) for m in ("recall@10", "ndcg@10")}
            for mode in VECTOR_MODES if mode in e["quality"]}
    out["finished"], out["load_avg_end"] = _utc(), _load()
    return out


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


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


#: ONNX Runtime session settings tried against the default (one thread): denormals flushed to zero, and the
#: intra-op pool's spinning off (what a loaded machine would want from more than one thread).
SESSION_TRIES = {"default": {}, "denormal as zero": {"session.set_denormal_as_zero": "1"},
                 "no spinning": {"session.intra_op.allow_spinning": "0"}}


def session_options(texts: list[str], batch: int, rounds: int) -> dict[str, Any]:
    """onnx-int8 chunks per CPU second (one thread) under each of SESSION_TRIES, interleaved `rounds` times."""
    import onnxruntime as ort

    from retrieval.onnx_encoder import OnnxEncoder, mean_pool

    enc = OnnxEncoder(quantize=True, batch_size=batch, threads=1, workers=1)
    encodings = enc.tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
    feeds = [enc._arrays([encodings[i] for i in order[s:s + batch]]) for s in range(0, len(order), batch)]
    sessions = {}
    for name, entries in SESSION_TRIES.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for key, value in entries.items():
            opts.add_session_config_entry(key, value)
        sessions[name] = ort.InferenceSession(str(enc.model_file), opts, providers=["CPUExecutionProvider"])
    runs: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            c = time.process_time()
            for feed in feeds:
                mean_pool(session.run(None, feed)[0], feed["attention_mask"])
            runs[name].append(round(len(texts) / (time.process_time() - c), 1))
    return {name: {"chunks_per_cpu_s_runs": r, "chunks_per_cpu_s": round(statistics.median(r), 1),
                   "vs_default": median_ratio(r, runs["default"])} for name, r in runs.items()}


def static_int8(texts: list[str], batch: int, rounds: int) -> dict[str, Any]:
    """Static int8 of the fused graph's MatMuls (QDQ, weights per channel, activations calibrated min-max on the
    evals KB's chunks, one at a time) against the dynamic int8 default: chunks per CPU second (one thread) and
    the cosine of both to the float model's vectors on the benchmark chunks."""
    import tempfile

    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from evals.kb_index import article_files
    from retrieval.bundled_model import bundled_model_path
    from retrieval.documents import SourceDoc
    from retrieval.onnx_encoder import ExportOptions, OnnxEncoder, _fuse, _session, cached_model_file, mean_pool

    dynamic = OnnxEncoder(quantize=True, batch_size=batch, threads=1, workers=1)
    plain = OnnxEncoder(quantize=False, batch_size=batch, threads=1, workers=1)
    calib = [c for f in article_files() for c in chunk_texts([SourceDoc(source_id=f.name, doc_type="kb",
                                                                        visibility="public", text=f.read_text())])]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(dynamic._arrays([e]) for e in dynamic.tokenizer.encode_batch(calib))

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    model_dir = bundled_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        fused, shaped, static = (Path(tmp) / n for n in ("fused.onnx", "shaped.onnx", "static.onnx"))
        _fuse(model_dir, cached_model_file(model_dir, ExportOptions(quantize=False)), fused)
        quant_pre_process(str(fused), str(shaped), skip_optimization=True)  # types of the fused ops' outputs
        quantize_static(str(shaped), str(static), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        session = _session(static, threads=1)
        encodings = dynamic.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        groups = [order[s:s + batch] for s in range(0, len(order), batch)]
        feeds = [dynamic._arrays([encodings[i] for i in g]) for g in groups]
        runs: dict[str, list[float]] = {"dynamic (default)": [], "static QDQ": []}
        vecs: dict[str, np.ndarray] = {}
        for _ in range(rounds):
            for name, sess in (("dynamic (default)", dynamic.session), ("static QDQ", session)):
                out = np.zeros((len(texts), dynamic.dim), dtype=np.float32)
                c = time.process_time()
                for g, feed in zip(groups, feeds, strict=True):
                    out[g] = mean_pool(sess.run(None, feed)[0], feed["attention_mask"])
                runs[name].append(round(len(texts) / (time.process_time() - c), 1))
                vecs[name] = out
    ref = plain.encode_sync(texts)
    res: dict[str, Any] = {"calibration_chunks": len(calib)}
    for name, r in runs.items():
        cos = (vecs[name] * ref).sum(axis=1)
        res[name] = {"chunks_per_cpu_s_runs": r, "chunks_per_cpu_s": round(statistics.median(r), 1),
                     "vs_dynamic": median_ratio(r, runs["dynamic (default)"]),
                     "cosine_to_float_min": round(float(cos.min()), 4),
                     "cosine_to_float_mean": round(float(cos.mean()), 4)}
    return res


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
            res[name]["ingest"] = await ingestion(enc, docs, texts, rounds)
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
        ("encoder busy share in ingestion", lambda e: f"{e['ingest']['encoder_busy_share']:.2f}"),
        ("raw CPU / ingest CPU (+ OpenSearch)", lambda e: f"{e['ingest']['cpu_ratio_to_raw']:.2f} "
         f"({e['ingest'].get('cpu_ratio_to_raw_with_opensearch', float('nan')):.2f})"),
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
