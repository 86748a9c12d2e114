"""Hybrid fusion math: min-max normalisation + weighted mean, and reciprocal rank fusion."""

from __future__ import annotations

import math

import pytest

from retrieval.fusion import fuse_minmax, fuse_rrf, minmax


def test_minmax_scales_to_unit_interval():
    assert minmax([2.0, 4.0, 6.0]) == [0.0, 0.5, 1.0]
    assert minmax([]) == []
    assert minmax([3.0]) == [1.0]
    assert minmax([5.0, 5.0]) == [1.0, 1.0]
    with pytest.raises(ValueError):
        minmax([1.0, math.inf])


def test_minmax_fusion_weighted_mean_missing_counts_zero():
    knn = [("a", 0.9), ("b", 0.7), ("c", 0.5)]
    bm25 = [("b", 12.0), ("d", 6.0), ("a", 2.0)]
    fused = dict(fuse_minmax([knn, bm25], [0.5, 0.5]))
    assert fused["a"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert fused["b"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert fused["c"] == pytest.approx(0.0)
    assert fused["d"] == pytest.approx(0.5 * 0.4)
    assert [d for d, _ in fuse_minmax([knn, bm25], [0.5, 0.5])][:2] == ["b", "a"]


def test_minmax_weights_are_normalised_and_shift_the_ranking():
    knn = [("a", 0.9), ("b", 0.1)]
    bm25 = [("b", 9.0), ("a", 1.0)]
    assert fuse_minmax([knn, bm25], [3, 1])[0][0] == "a"
    assert fuse_minmax([knn, bm25], [1, 3])[0][0] == "b"
    assert fuse_minmax([knn, bm25], [2, 2]) == fuse_minmax([knn, bm25], [0.5, 0.5])


def test_rrf_scores_and_ties_are_deterministic():
    a = [("x", 1.0), ("y", 0.5)]
    b = [("y", 3.0), ("x", 2.0)]
    fused = fuse_rrf([a, b], rank_constant=60)
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert [d for d, _ in fused] == ["x", "y"]  # equal scores: by id
    only = fuse_rrf([[("z", 9.0)]])
    assert only == [("z", pytest.approx(1 / 61))]


def test_rrf_ignores_raw_scores():
    a = [("x", 1000.0), ("y", 0.0001)]
    assert fuse_rrf([a]) == fuse_rrf([[("x", 1.0), ("y", 0.9)]])


@pytest.mark.parametrize("weights", [[1.0], [-1.0, 1.0], [0.0, 0.0], [math.nan, 1.0]])
def test_bad_weights(weights):
    with pytest.raises(ValueError):
        fuse_minmax([[("a", 1.0)], [("a", 1.0)]], weights)


def test_bad_rank_constant():
    with pytest.raises(ValueError):
        fuse_rrf([[("a", 1.0)]], rank_constant=0)
