"""The evals metric functions against hand-computed values."""

from __future__ import annotations

import math

import pytest

from evals.metrics import (
    PRF,
    Span,
    dedupe,
    match_spans,
    mean_reciprocal_rank,
    micro,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
)


def test_dedupe_keeps_first_positions():
    assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_recall_at_k_counts_documents_not_chunks():
    ranked = ["x", "x", "a", "y", "b"]  # distinct: x, a, y, b
    assert recall_at_k(ranked, {"a", "b"}, 1) == 0.0
    assert recall_at_k(ranked, {"a", "b"}, 2) == 0.5  # x, a
    assert recall_at_k(ranked, {"a", "b"}, 4) == 1.0
    assert recall_at_k(ranked, set(), 4) == 0.0


def test_reciprocal_rank_and_mrr():
    assert reciprocal_rank(["a", "b"], {"a"}) == 1.0
    assert reciprocal_rank(["x", "x", "x", "b"], {"b"}) == 0.5  # b is the 2nd distinct document
    assert reciprocal_rank(["x", "y"], {"b"}) == 0.0
    # (1 + 1/3 + 0) / 3
    runs = [(["a"], {"a"}), (["x", "y", "b"], {"b"}), (["x"], {"b"})]
    assert mean_reciprocal_rank(runs) == pytest.approx(4 / 9)
    assert mean_reciprocal_rank([]) == 0.0


def test_ndcg_binary_gains():
    # one relevant doc at rank 2: DCG = 1/log2(3), IDCG = 1
    assert ndcg_at_k(["x", "a", "y"], {"a"}, 5) == pytest.approx(1 / math.log2(3))
    # two relevant at ranks 1 and 3: (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 5) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 5) == pytest.approx(1.0)
    # relevant beyond k does not count; IDCG is capped at k positions
    assert ndcg_at_k(["x", "a"], {"a", "b", "c"}, 1) == 0.0
    assert ndcg_at_k(["a"], {"a", "b", "c"}, 1) == pytest.approx(1.0)


def test_prf_scores_and_conventions():
    p = PRF(tp=6, fp=2, fn=4)
    assert p.precision == 0.75
    assert p.recall == 0.6
    assert p.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)  # = 2/3
    assert PRF(tp=0, fp=0, fn=3).precision == 1.0
    assert PRF(tp=0, fp=0, fn=3).recall == 0.0
    assert PRF(tp=0, fp=0, fn=3).f1 == 0.0
    assert (PRF(1, 2, 3) + PRF(4, 5, 6)).as_dict()["tp"] == 5


def test_match_spans_same_kind_one_to_one():
    gold = [Span("PHONE", 0, 10), Span("EMAIL", 20, 30), Span("BVN", 40, 51)]
    pred = [Span("PHONE", 2, 10), Span("PHONE", 5, 8),  # second overlap of the same gold: a false positive
            Span("NIN", 40, 51),  # wrong kind
            Span("CARD_NUMBER", 60, 76)]  # nothing there
    out = match_spans(gold, pred)
    assert (out["PHONE"].tp, out["PHONE"].fp, out["PHONE"].fn) == (1, 1, 0)
    assert (out["EMAIL"].tp, out["EMAIL"].fn) == (0, 1)
    assert (out["BVN"].tp, out["BVN"].fn) == (0, 1)
    assert out["NIN"].fp == 1 and out["CARD_NUMBER"].fp == 1
    total = micro(out)
    assert (total.tp, total.fp, total.fn) == (1, 3, 2)


def test_match_spans_any_kind_counts_mislabelled_values_as_masked():
    gold = [Span("BVN", 40, 51)]
    out = match_spans(gold, [Span("NIN", 40, 51)], same_kind=False)
    assert (out["BVN"].tp, out["BVN"].fn) == (1, 0)
    assert "NIN" not in out


def test_spans_touching_do_not_overlap():
    assert not Span("A", 0, 5).overlaps(Span("A", 5, 9))
    assert Span("A", 0, 6).overlaps(Span("A", 5, 9))
