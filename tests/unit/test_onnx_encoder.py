"""The ONNX encoders: the same vectors as the torch pipeline, a cached export that is checked and re-made, and
the setting that chooses. (The export is made once into the shared cache; these tests reuse it.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from config.settings import Settings
from retrieval import onnx_encoder
from retrieval.bundled_model import BUNDLED_MODEL, bundled_model_path, encoder_name
from retrieval.encoder import SentenceTransformerEncoder, lazy_encoder_from_settings, make_encoder
from retrieval.onnx_encoder import (
    POOL_MIN_BATCHES_PER_WORKER,
    ExportOptions,
    OnnxEncoder,
    cached_model_file,
    cpu_count,
    ensure_onnx_model,
    export_key,
    is_valid,
    mean_pool,
)

SENTENCES = [
    "How do I dispute a late payment on my credit report?",
    "fees",
    "My transfer to Nairobi has been pending for three days.",
    "Interest on the personal loan is 7.5% APR; see section 4.2 of the agreement.",
    "Ndalama zangu hazijafika",
    "A hard inquiry stays on your report for two years, but it affects your score for about one.",
]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return SentenceTransformerEncoder(threads=1).encode_sync(SENTENCES)


@pytest.fixture(scope="module")
def onnx_fp32() -> OnnxEncoder:
    return OnnxEncoder(quantize=False, threads=1)


@pytest.fixture(scope="module")
def onnx_int8() -> OnnxEncoder:
    return OnnxEncoder(quantize=True, threads=1)


def test_onnx_float_gives_the_torch_vectors(onnx_fp32, torch_vectors):
    v = onnx_fp32.encode_sync(SENTENCES)
    assert v.shape == (len(SENTENCES), 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert ((v * torch_vectors).sum(axis=1) >= 0.999).all()


def test_onnx_int8_stays_close_to_the_torch_vectors(onnx_int8, torch_vectors):
    cos = (onnx_int8.encode_sync(SENTENCES) * torch_vectors).sum(axis=1)
    assert cos.min() >= 0.97 and cos.mean() >= 0.99, cos


def test_batching_and_length_sorting_do_not_change_a_vector(onnx_fp32):
    """A short text padded in a batch with long ones (and reordered) gets the vector it gets alone."""
    texts = [SENTENCES[1], "a much longer text " * 40, SENTENCES[0], "x"]
    batched = onnx_fp32.encode_sync(texts)
    alone = np.stack([onnx_fp32.encode_sync([t])[0] for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_the_int8_graph_has_every_attention_layer_fused_and_quantised(onnx_int8):
    import onnx

    ops = [n.op_type for n in onnx.load(str(onnx_int8.model_file), load_external_data=False).graph.node]
    assert ops.count("QAttention") == 6 and ops.count("EmbedLayerNormalization") == 1
    assert "Softmax" not in ops  # no attention left unfused


def test_a_worker_pool_gives_the_vectors_of_one_process():
    """Batches spread over two worker processes come back in input order, equal to one process's vectors (same
    batch size: int8 activations are quantised per batch, so a vector depends on its batch)."""
    batch = 8
    texts = [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(batch * POOL_MIN_BATCHES_PER_WORKER * 2 + 3)]
    single = OnnxEncoder(quantize=True, threads=1, batch_size=batch)
    pooled = OnnxEncoder(quantize=True, threads=1, batch_size=batch, workers=2)
    try:
        got = pooled.encode_sync(texts)
        assert pooled._pool is not None  # the pool ran the batches
        np.testing.assert_array_equal(got, single.encode_sync(texts))
        np.testing.assert_array_equal(pooled.encode_sync(texts[:1]), single.encode_sync(texts[:1]))
    finally:
        pooled.close()


def test_texts_longer_than_the_model_window_are_truncated_not_refused(onnx_int8):
    v = onnx_int8.encode_sync(["word " * 5000])
    assert v.shape == (1, 384) and np.isfinite(v).all()


def test_mean_pool_ignores_padding():
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [99.0, 99.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask), [[1.0, 0.0]])


def _copy_cache(tmp_path, options: ExportOptions):
    """The shared cache's valid file for `options` (and the float one it is quantised from), copied to tmp."""
    model_dir = bundled_model_path()
    for opts in {ExportOptions(quantize=False), options}:
        src = ensure_onnx_model(model_dir, opts)
        dst = cached_model_file(model_dir, opts, tmp_path)
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
        shutil.copy(src.with_suffix(".onnx.sha256"), dst.with_suffix(".onnx.sha256"))
    return model_dir, cached_model_file(model_dir, options, tmp_path)


def test_a_corrupt_cached_file_is_detected_and_made_again(tmp_path):
    options = ExportOptions(quantize=True)
    model_dir, path = _copy_cache(tmp_path, options)
    good = path.read_bytes()
    assert is_valid(path)
    with path.open("r+b") as f:  # one flipped byte in the middle, size unchanged
        f.seek(len(good) // 2)
        f.write(bytes([good[len(good) // 2] ^ 0xFF]))
    assert not is_valid(path)
    steps: list[str] = []
    assert ensure_onnx_model(model_dir, options, root=tmp_path, step=steps.append) == path
    assert is_valid(path) and path.read_bytes() == good
    # quantised again from the cached float export, not exported from torch again
    assert any("quantising" in s for s in steps) and not any("exporting" in s for s in steps)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_a_missing_hash_file_means_the_file_is_not_trusted(tmp_path):
    options = ExportOptions(quantize=True)
    model_dir, path = _copy_cache(tmp_path, options)
    path.with_suffix(".onnx.sha256").unlink()
    assert not is_valid(path)
    steps: list[str] = []
    ensure_onnx_model(model_dir, options, root=tmp_path, step=steps.append)
    assert is_valid(path) and steps
    steps.clear()
    ensure_onnx_model(model_dir, options, root=tmp_path, step=steps.append)  # valid now: nothing is made
    assert steps == []


def test_the_cache_key_follows_the_weights_and_the_options(tmp_path):
    model_dir = bundled_model_path()
    other = tmp_path / "model"
    other.mkdir()
    for f in model_dir.iterdir():
        if f.is_file():
            (other / f.name).symlink_to(f)
    (other / "config.json").unlink()
    (other / "config.json").write_text((model_dir / "config.json").read_text().replace("}", ', "x": 1}', 1))
    keys = {export_key(model_dir, ExportOptions(quantize=True)), export_key(model_dir, ExportOptions(quantize=False)),
            export_key(model_dir, ExportOptions(quantize=True, opset=18)), export_key(other, ExportOptions())}
    assert len(keys) == 4
    assert export_key(model_dir, ExportOptions()) == export_key(model_dir, ExportOptions())


def test_a_new_export_procedure_or_quantisation_scheme_changes_the_cache_key(monkeypatch):
    model_dir = bundled_model_path()
    before = {q: export_key(model_dir, ExportOptions(quantize=q)) for q in (True, False)}
    monkeypatch.setattr(onnx_encoder, "QUANT_SCHEME", onnx_encoder.QUANT_SCHEME + "/static")
    assert export_key(model_dir, ExportOptions(quantize=True)) != before[True]
    assert export_key(model_dir, ExportOptions(quantize=False)) == before[False]  # the float file is not quantised
    monkeypatch.setattr(onnx_encoder, "EXPORT_REVISION", onnx_encoder.EXPORT_REVISION + 1)
    assert export_key(model_dir, ExportOptions(quantize=False)) != before[False]


def test_the_setting_chooses_the_encoder_and_names_its_vectors(monkeypatch):
    assert Settings().encoder == "onnx-int8"
    monkeypatch.setenv("KREDETE_ENCODER", "torch")
    assert Settings().encoder == "torch"
    monkeypatch.setenv("KREDETE_ENCODER", "gpu")
    with pytest.raises(ValidationError):
        Settings()
    assert encoder_name("torch") == BUNDLED_MODEL
    assert len({encoder_name(k) for k in ("onnx-int8", "onnx", "torch")}) == 3
    with pytest.raises(ValueError, match="unknown encoder"):
        make_encoder("gpu")
    lazy = lazy_encoder_from_settings(Settings(encoder="onnx"))
    assert (lazy.name, lazy.dim) == (encoder_name("onnx"), 384)
    # int8 vectors changed with the quantised attention: indexes of the first int8 scheme are refused, not mixed
    assert encoder_name("onnx-int8") != f"{BUNDLED_MODEL}+onnx-int8"


def test_the_worker_setting_reaches_the_encoder(monkeypatch):
    assert Settings().encoder_workers == 0  # one per core
    assert make_encoder("onnx-int8", threads=1, workers=0).workers == cpu_count()
    monkeypatch.setenv("KREDETE_ENCODER_WORKERS", "1")
    from retrieval.encoder import encoder_from_settings

    assert encoder_from_settings(Settings()).workers == 1


async def test_the_lazy_encoder_builds_the_configured_encoder():
    lazy = lazy_encoder_from_settings(Settings(encoder="onnx-int8", encoder_threads=1))
    inner = await lazy.loaded()
    assert isinstance(inner, OnnxEncoder) and inner.name == encoder_name("onnx-int8")
    assert (await lazy.embed_query("fees")).shape == (384,)
