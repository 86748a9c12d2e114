"""Text encoders: an async protocol, the local model (torch here, ONNX Runtime in `onnx_encoder`), the
`KREDETE_ENCODER` factory, and a Redis query cache.

A hosted embedding API plugs in by implementing :class:`Encoder`; nothing else changes, except that
its `name` and `dim` must match the index (a new model means a new index, rebuilt via alias swap).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from retrieval.bundled_model import (
    BUNDLED_DIM,
    BlockingEncoder,
    bundled_model_path,
    encoder_name,
)

if TYPE_CHECKING:
    from config.settings import Settings
    from stores.cache import CacheStore

QUERY_CACHE_PREFIX = "qemb:"  # the agent's Redis ACL allows this prefix
QUERY_CACHE_TTL_S = 86_400
EncoderKind = Literal["onnx-int8", "onnx", "torch"]


@runtime_checkable
class Encoder(Protocol):
    """Maps text to unit-length vectors of `dim` floats (cosine similarity == dot product)."""

    name: str
    dim: int

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (len(texts), dim), float32, L2-normalised."""
        ...

    async def embed_query(self, text: str) -> np.ndarray:
        """Shape (dim,), float32, L2-normalised."""
        ...


def make_encoder(kind: str, *, threads: int = 2, batch_size: int = 32, workers: int = 1,
                 step: Callable[[str], None] | None = None) -> Encoder:
    """The bundled model run by `kind`; `step` reports a first-use ONNX export (tens of seconds). `workers`
    (ONNX only; 0: one per core) spreads large encodes over processes."""
    encoder_name(kind)  # validates
    if kind == "torch":
        return SentenceTransformerEncoder(batch_size=batch_size, threads=threads)
    from retrieval.onnx_encoder import OnnxEncoder, cpu_count

    return OnnxEncoder(quantize=kind == "onnx-int8", batch_size=batch_size, threads=threads,
                       workers=workers or cpu_count(), step=step)


def encoder_from_settings(settings: Settings | None = None, *, step: Callable[[str], None] | None = None) -> Encoder:
    """The encoder `KREDETE_ENCODER` chooses, with its threads, batch size and worker processes."""
    if settings is None:
        from config.settings import Settings

        settings = Settings()
    return make_encoder(settings.encoder, threads=settings.encoder_threads, batch_size=settings.encoder_batch_size,
                        workers=settings.encoder_workers, step=step)


def lazy_encoder_from_settings(settings: Settings | None = None) -> LazyEncoder:
    """The settings' encoder, built at its first embedding (its name is known before: it names the index)."""
    if settings is None:
        from config.settings import Settings

        settings = Settings()
    return LazyEncoder(lambda: encoder_from_settings(settings), name=encoder_name(settings.encoder), dim=BUNDLED_DIM)


class SentenceTransformerEncoder(BlockingEncoder):
    """A local sentence-transformers model on CPU, loaded offline (never from a hub).

    `encode` runs in a worker thread so the event loop keeps serving; one encode at a time, since
    torch already uses `threads` cores.
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 32, threads: int = 2,
                 device: str = "cpu") -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        path = Path(model_path) if model_path else bundled_model_path()
        self.model: Any = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.name = path.name if model_path else "all-MiniLM-L6-v2"
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def encode_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking encode; used by the benchmark as the raw-throughput ceiling."""
        with self._lock:
            vecs = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)



class LazyEncoder:
    """An encoder built on first use, off the event loop: loading the sentence-transformers model takes seconds
    (torch import, weights), and done inside a call it froze every other call of the server meanwhile. `name`
    and `dim` are declared up front (they name the index); a search that needs no vector (BM25, or a query
    vector cached in Redis) never loads the model at all."""

    def __init__(self, factory: Callable[[], Encoder], *, name: str, dim: int) -> None:
        self._factory = factory
        self._inner: Encoder | None = None
        self._lock = asyncio.Lock()
        self.name = name
        self.dim = dim

    async def loaded(self) -> Encoder:
        if self._inner is None:
            async with self._lock:
                if self._inner is None:
                    inner = await asyncio.to_thread(self._factory)
                    if (inner.name, inner.dim) != (self.name, self.dim):
                        raise ValueError(f"the encoder is {inner.name}/{inner.dim}, declared {self.name}/{self.dim}")
                    self._inner = inner
        return self._inner

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await (await self.loaded()).embed_documents(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return await (await self.loaded()).embed_query(text)


class CachedQueryEncoder:
    """Wraps an encoder; query vectors are cached in Redis under `qemb:<model>:<sha256>` for 24 h.

    A Redis failure never fails a search: the vector is computed and the error is counted.
    """

    def __init__(self, inner: Encoder, cache: CacheStore | None, *, ttl_s: int = QUERY_CACHE_TTL_S) -> None:
        self.inner = inner
        self.cache = cache
        self.ttl_s = ttl_s
        self.name = inner.name
        self.dim = inner.dim
        self.hits = self.misses = self.errors = 0

    def cache_key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"{QUERY_CACHE_PREFIX}{self.name}:{self.dim}:{digest}"

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        key = self.cache_key(text)
        if self.cache is not None:
            try:
                raw = await self.cache.redis.get(key)
            except Exception:  # cache is best-effort: any Redis error falls through to the model
                raw = None
                self.errors += 1
            if raw:
                vec = np.frombuffer(base64.b64decode(raw), dtype=np.float32)
                if vec.shape == (self.dim,):
                    self.hits += 1
                    return vec
        self.misses += 1
        vec = np.asarray(await self.inner.embed_query(text), dtype=np.float32)
        if self.cache is not None:
            try:
                await self.cache.redis.set(key, base64.b64encode(vec.tobytes()).decode("ascii"), ex=self.ttl_s)
            except Exception:
                self.errors += 1
        return vec


class HashingEncoder:
    """Deterministic bag-of-words hashing encoder: no model, for tests of plumbing only."""

    def __init__(self, dim: int = 384, name: str = "hashing") -> None:
        self.dim = dim
        self.name = name

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) else -1.0
        n = float(np.linalg.norm(vec))
        return vec / n if n else vec

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    async def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)
