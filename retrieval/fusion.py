"""Rank fusion for hybrid search: min-max normalisation + weighted mean, and reciprocal rank fusion.

Inputs are ranked lists of `(doc_id, score)`, best first, one list per retriever (e.g. kNN, BM25).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Ranked = Sequence[tuple[str, float]]


def minmax(scores: Sequence[float]) -> list[float]:
    """Scale to [0, 1]; when every score is equal (or there is one) they all become 1.0."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if not math.isfinite(lo) or not math.isfinite(hi):
        raise ValueError("scores must be finite")
    if hi - lo <= 1e-12:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def _check_weights(weights: Sequence[float], n: int) -> list[float]:
    if len(weights) != n:
        raise ValueError(f"{n} ranked lists but {len(weights)} weights")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    total = float(sum(weights))
    return [w / total for w in weights]


def fuse_minmax(lists: Sequence[Ranked], weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Weighted arithmetic mean of min-max normalised scores; a document missing from a list gets 0
    there (OpenSearch's normalization-processor semantics). Ties break by id for determinism."""
    w = _check_weights(weights if weights is not None else [1.0] * len(lists), len(lists))
    fused: dict[str, float] = {}
    for ranked, weight in zip(lists, w, strict=True):
        for (doc_id, _), norm in zip(ranked, minmax([s for _, s in ranked]), strict=True):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * norm
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse_rrf(lists: Sequence[Ranked], *, rank_constant: int = 60,
             weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: sum of `weight / (rank_constant + rank)`, rank starting at 1."""
    if rank_constant < 1:
        raise ValueError("rank_constant must be >= 1")
    w = list(weights) if weights is not None else [1.0] * len(lists)
    _check_weights(w, len(lists))
    fused: dict[str, float] = {}
    for ranked, weight in zip(lists, w, strict=True):
        for rank, (doc_id, _) in enumerate(ranked, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (rank_constant + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
