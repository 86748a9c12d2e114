"""all-MiniLM-L6-v2 through ONNX Runtime: exported once from the packaged weights, optionally int8-quantised.

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
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.bundled_model import BUNDLED_MODEL, BlockingEncoder, bundled_model_path, encoder_name

#: Bumped when the export procedure changes, so older cached files are not reused.
EXPORT_REVISION = 1
#: Files whose bytes decide the exported graph.
WEIGHT_FILES = ("model.safetensors", "config.json")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Dynamic int8 of the BERT-fused graph (onnxruntime.transformers: attention, layer norms, GELU fused), only the
#: MatMul weights, per output channel. Per-tensor int8 of every op (the default) moved some sentence vectors to
#: cosine 0.84 of torch's; this keeps the benchmark corpus's chunks >= 0.983 (mean 0.993), and the fused graph
#: ran 1.3x faster than the unfused one quantised alike (bench/results/encoder.json has the end result).
QUANT_SCHEME = "bert-fused/matmul/per-channel/int8"

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


def _export(model_dir: Path, out: Path, opset: int) -> None:
    """Trace the transformer (not the pooling: that is numpy, below) with dynamic batch and sequence axes."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes: batch and tokens are declared dynamic below
        # dynamo=False: the TorchScript exporter needs no onnxscript and handles this BERT graph fully
        torch.onnx.export(Hidden(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out), dynamo=False,
                          input_names=list(INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)


def _fuse(model_dir: Path, src: Path, out: Path) -> None:
    """ONNX Runtime's BERT graph fusions (offline, so the file is the same on every machine)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text())
    optimize_model(str(src), model_type="bert", num_heads=int(config["num_attention_heads"]),
                   hidden_size=int(config["hidden_size"]), opt_level=1).save_model_to_file(str(out))


def _quantize(src: Path, out: Path) -> None:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser's root-logger advice to pre-process (done: _fuse)
    try:
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"],
                         # fused ops (com.microsoft domain) have no inferred output types: they are float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


class OnnxEncoder(BlockingEncoder):
    """The bundled sentence-transformers model run by ONNX Runtime on CPU, same vectors as the torch pipeline:
    the model's own fast tokenizer (truncation at its max_seq_length), mean pooling over real tokens, L2
    normalisation. Texts are sorted by length before batching, so a batch pads to similar lengths."""

    def __init__(self, *, quantize: bool = True, batch_size: int = 32, threads: int = 2,
                 model_dir: Path | None = None, cache_root: Path | None = None, step: Step | None = None) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import onnxruntime as ort
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
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.model_file), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _batch(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            types[i, :n] = e.type_ids
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        return mean_pool(hidden, mask)

    def encode_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking encode, in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        with self._lock:  # the session already uses `threads` cores; one batch at a time
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                out[idx] = self._batch([encodings[i] for i in idx])
        return out



def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling(mean) then Normalize: the mean of real tokens' vectors, unit length."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    mean = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return (mean / np.clip(norms, 1e-12, None)).astype(np.float32)
