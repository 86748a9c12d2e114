"""all-MiniLM-L6-v2 through ONNX Runtime: exported once from the packaged weights, optionally int8-quantised,
run in this process or by a pool of worker processes (one ONNX Runtime thread each).

The exported file lives in the shared cache (`config.paths.cache_dir()/onnx/<key>/`), keyed by a hash of the
weights and the export options; next to it a `.sha256` records the file's own hash, checked on every load, so a
truncated or corrupt file is made again rather than loaded. Export needs torch (already a dependency of the
torch encoder); running needs only onnxruntime, tokenizers and numpy. No network at any step.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.bundled_model import BUNDLED_MODEL, BlockingEncoder, bundled_model_path, encoder_name

log = logging.getLogger("kredete.retrieval.onnx_encoder")

#: Bumped when the export procedure changes, so older cached files are not reused. 2: the attention is traced in
#: the shape ONNX Runtime's BERT fusion recognises (one fused Attention op per layer; revision 1 left it unfused).
EXPORT_REVISION = 2
#: Files whose bytes decide the exported graph.
WEIGHT_FILES = ("model.safetensors", "config.json")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Dynamic int8 of the BERT-fused graph (onnxruntime.transformers: embeddings, attention, layer norms, GELU
#: fused): the MatMul weights per output channel, and the fused Attention ops (QAttention: int8 Q/K/V projection).
#: Per-tensor int8 of every op (the quantiser's default) moved some sentence vectors to cosine 0.84 of torch's;
#: this keeps the benchmark corpus's chunks >= 0.97 of torch's (mean 0.99; bench/results/encoder.json).
QUANT_SCHEME = "bert-fused-attention/matmul+attention/per-channel/int8"
QUANT_OPS = ("MatMul", "Attention")

#: Batches per worker an encode needs to go to the worker pool (ingestion hands over ~90 chunks at a time): fewer
#: run sooner in this process than handed over, and a query or a test's handful of texts never starts the
#: pool (a process per worker importing ONNX Runtime and loading the model, about a second).
POOL_MIN_BATCHES_PER_WORKER = 2

Step = Callable[[str], None]


class OnnxExportError(RuntimeError):
    """The ONNX file could not be made or loaded (torch missing, corrupt weights, a disk error)."""


@dataclass(frozen=True)
class ExportOptions:
    quantize: bool = True
    opset: int = 17

    @property
    def label(self) -> str:
        return "onnx-int8" if self.quantize else "onnx"


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha(model_dir: Path) -> str:
    """Hash of the packaged weights and config (what the exported graph is made from)."""
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        h.update(name.encode())
        h.update(_file_sha(model_dir / name).encode())
    return h.hexdigest()


def export_key(model_dir: Path, options: ExportOptions) -> str:
    h = hashlib.sha256(weights_sha(model_dir).encode())
    h.update(json.dumps({"rev": EXPORT_REVISION, "quantize": QUANT_SCHEME if options.quantize else None,
                         "opset": options.opset}, sort_keys=True).encode())
    return h.hexdigest()[:24]


def onnx_cache_root() -> Path:
    from config.paths import cache_dir

    return cache_dir() / "onnx"


def cached_model_file(model_dir: Path, options: ExportOptions, root: Path | None = None) -> Path:
    """Where the exported file for these weights and options lives (it may not exist yet)."""
    return (root or onnx_cache_root()) / f"{BUNDLED_MODEL}-{export_key(model_dir, options)}" / "model.onnx"


def is_valid(path: Path) -> bool:
    """The file exists and its bytes match the hash recorded when it was made."""
    sha_file = path.with_suffix(".onnx.sha256")
    try:
        return path.is_file() and sha_file.read_text().strip() == _file_sha(path)
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One process exports at a time (parallel test workers, a CLI and a server starting together)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_onnx_model(model_dir: Path | None = None, options: ExportOptions | None = None, *,
                      root: Path | None = None, step: Step | None = None) -> Path:
    """The exported (and maybe quantised) model file, made if missing or corrupt; `step` reports progress."""
    model_dir = model_dir or bundled_model_path()
    options = options or ExportOptions()
    target = cached_model_file(model_dir, options, root)
    if is_valid(target):
        return target
    with _exclusive(target.parent / ".lock"):
        if is_valid(target):  # another process made it while we waited
            return target
        say = step or (lambda _msg: None)
        tmp = target.parent / f".tmp-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            plain = ExportOptions(quantize=False, opset=options.opset)
            fp32 = cached_model_file(model_dir, plain, root)
            if not (options.quantize and is_valid(fp32)):  # quantising reuses a cached fp32 export
                fp32 = tmp / "fp32.onnx"
                say(f"exporting {BUNDLED_MODEL} to ONNX (once; cached in {target.parent})")
                _export(model_dir, fp32, options.opset)
            made = fp32
            if options.quantize:
                say("fusing and quantising to int8 (dynamic)")
                fused = tmp / "fused.onnx"
                _fuse(model_dir, fp32, fused)
                made = tmp / "int8.onnx"
                _quantize(fused, made)
            say("checking the exported file")
            sha = _file_sha(made)
            os.replace(made, target)
            target.with_suffix(".onnx.sha256").write_text(sha + "\n")
        except OnnxExportError:
            raise
        except Exception as exc:
            raise OnnxExportError(f"could not export {BUNDLED_MODEL} to ONNX: {type(exc).__name__}: {exc}") from exc
        finally:
            for f in tmp.glob("*"):
                f.unlink(missing_ok=True)
            tmp.rmdir()
    return target


def _fusable_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                       scaling: float | None = None, dropout: float = 0.0, **_kw: Any) -> tuple[Any, Any]:
    """transformers' eager attention, scaled by a division (q.k / sqrt(d): exact, d is a power of two): its
    `* scaling` left two Mul parents on the mask's Add, and ONNX Runtime's fusion then took the wrong one."""
    import torch

    scores = torch.matmul(query, key.transpose(2, 3)) / float(module.attention_head_size ** 0.5)
    probs = torch.softmax(scores + attention_mask, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def _export(model_dir: Path, out: Path, opset: int) -> None:
    """Trace the transformer (not the pooling: that is numpy, below) with dynamic batch and sequence axes, in the
    shape ONNX Runtime's BERT fusion recognises (`_fuse`): the classic additive mask `(1 - mask) * -10000` (its
    newer mask helpers trace to Where/And graphs no fusion matches) and `_fusable_attention`."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AttentionInterface, AutoModel

    AttentionInterface.register("kredete-onnx-export", _fusable_attention)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True,
                                      attn_implementation="kredete-onnx-export").eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            emb = self.model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            additive = (1.0 - attention_mask[:, None, None, :].to(emb.dtype)) * -10000.0
            return self.model.encoder(emb, attention_mask=additive).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes: batch and tokens are declared dynamic below
        # dynamo=False: the TorchScript exporter needs no onnxscript and handles this BERT graph fully
        torch.onnx.export(Hidden(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out), dynamo=False,
                          input_names=list(INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)
    config = json.loads((model_dir / "config.json").read_text())
    heads = int(config["num_attention_heads"])
    _name_the_heads(out, heads, int(config["hidden_size"]) // heads)


def _name_the_heads(path: Path, heads: int, head_size: int) -> None:
    """The per-head reshapes trace as `view(batch, tokens, -1, head_size)`; the fusion reads the head count from
    that shape, so the -1 becomes `heads` (the same shape: hidden = heads * head_size)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    consts.update({i.name: numpy_helper.to_array(i) for i in model.graph.initializer})
    name = "kredete_attention_heads"
    model.graph.initializer.append(numpy_helper.from_array(np.array([heads], dtype=np.int64), name))
    for node in model.graph.node:
        if node.op_type == "Concat" and len(node.input) == 4:
            dims = [consts.get(i) for i in node.input[2:]]
            if all(d is not None and d.size == 1 for d in dims) and [int(d.item()) for d in dims] == [-1, head_size]:
                node.input[2] = name
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    unused = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]
    for node in unused:  # the -1s replaced above (ONNX Runtime warned about each at every load)
        model.graph.node.remove(node)
    onnx.save(model, str(path))


def _fuse(model_dir: Path, src: Path, out: Path) -> None:
    """ONNX Runtime's BERT graph fusions (offline, so the file is the same on every machine)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text())
    fused = optimize_model(str(src), model_type="bert", num_heads=int(config["num_attention_heads"]),
                           hidden_size=int(config["hidden_size"]), opt_level=1)
    made = fused.get_fused_operator_statistics().get("Attention", 0)
    if made != int(config["num_hidden_layers"]):  # the int8 scheme (and its vectors) assume fused attention
        raise OnnxExportError(f"ONNX Runtime fused {made} of {config['num_hidden_layers']} attention layers "
                              "(a transformers or onnxruntime upgrade changed the traced graph)")
    fused.save_model_to_file(str(out))


def _quantize(src: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser's root-logger advice to pre-process (done: _fuse)
    try:
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(QUANT_OPS),
                         # fused ops (com.microsoft domain) have no inferred output types: they are float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxEncoder(BlockingEncoder):
    """The bundled sentence-transformers model run by ONNX Runtime on CPU, same vectors as the torch pipeline:
    the model's own fast tokenizer (truncation at its max_seq_length), mean pooling over real tokens, L2
    normalisation. Texts are sorted by length before batching, so a batch pads to similar lengths.

    With `workers` > 1, an encode of more than one batch is spread over that many worker processes, each running
    one ONNX Runtime thread on whole batches (no locking or thread hand-offs inside a batch); this process
    tokenises, pads and pools. A batch is the same arrays through the same graph wherever it runs, so the vectors
    are the same as in this process with one thread. Queries (one batch) stay in this process."""

    def __init__(self, *, quantize: bool = True, batch_size: int = 32, threads: int = 2, workers: int = 1,
                 model_dir: Path | None = None, cache_root: Path | None = None, step: Step | None = None) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from tokenizers import Tokenizer

        model_dir = model_dir or bundled_model_path()
        self.options = ExportOptions(quantize=quantize)
        self.model_file = ensure_onnx_model(model_dir, self.options, root=cache_root, step=step)
        self.name = encoder_name(self.options.label)
        max_len = int(json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.no_padding()  # padded per batch below, to that batch's longest text
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id
        self.session = _session(self.model_file, threads)
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _arrays(self, encodings: list[Any]) -> dict[str, np.ndarray]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            types[i, :n] = e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def encode_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking encode, in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        groups = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        feeds = (self._arrays([encodings[i] for i in idx]) for idx in groups)
        if self.workers > 1 and len(groups) >= POOL_MIN_BATCHES_PER_WORKER * self.workers:
            feeds = list(feeds)
            try:
                for idx, vecs in zip(groups, self._worker_pool().map(_worker_run, feeds), strict=True):
                    out[idx] = vecs
                return out
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory, an unguarded __main__)
                log.warning("encoder worker pool failed (%s); encoding in this process from now on", exc)
                self.workers = 1
                self.close()
        with self._lock:  # the session already uses `threads` cores; one batch at a time
            for idx, feed in zip(groups, feeds, strict=True):
                out[idx] = _run(self.session, feed)
        return out

    def _worker_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: this process has threads (the event loop's, ONNX Runtime's) a fork would copy
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_init, initargs=(str(self.model_file),))
            return self._pool

    def close(self) -> None:
        """Stop the worker processes (started again by the next encode that needs them)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _session(model_file: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])


def _run(session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    hidden = session.run(None, feed)[0]
    return mean_pool(hidden, feed["attention_mask"])


#: A worker process's session (one ONNX Runtime thread: the pool's size is its parallelism).
_worker_session: Any = None


def _worker_init(model_file: str) -> None:
    global _worker_session
    _worker_session = _session(Path(model_file), threads=1)


def _worker_run(feed: dict[str, np.ndarray]) -> np.ndarray:
    return _run(_worker_session, feed)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling(mean) then Normalize: the mean of real tokens' vectors, unit length."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    mean = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return (mean / np.clip(norms, 1e-12, None)).astype(np.float32)
