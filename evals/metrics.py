"""Metric functions of the evals: ranking (recall@k, MRR, nDCG@k) and span detection (precision/recall/F1).

Pure functions, no I/O. Ranked lists may repeat a document (several chunks of one article); every ranking
metric counts a document at its first position only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass


def dedupe(ranked: Iterable[Hashable]) -> list[Hashable]:
    """Items in order of first appearance."""
    seen: set[Hashable] = set()
    out = []
    for x in ranked:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def recall_at_k(ranked: Sequence[Hashable], relevant: set[Hashable], k: int) -> float:
    """Share of the relevant documents found in the first k distinct results."""
    if not relevant:
        return 0.0
    return len(set(dedupe(ranked)[:k]) & relevant) / len(relevant)


def reciprocal_rank(ranked: Sequence[Hashable], relevant: set[Hashable]) -> float:
    """1 / rank of the first relevant distinct result (0 when none is found)."""
    for i, x in enumerate(dedupe(ranked), start=1):
        if x in relevant:
            return 1.0 / i
    return 0.0


def mean_reciprocal_rank(runs: Iterable[tuple[Sequence[Hashable], set[Hashable]]]) -> float:
    rr = [reciprocal_rank(r, rel) for r, rel in runs]
    return sum(rr) / len(rr) if rr else 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: set[Hashable], k: int) -> float:
    """Binary-gain nDCG@k: sum of 1/log2(rank+1) over relevant hits, over the same for an ideal ranking."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, x in enumerate(dedupe(ranked)[:k], start=1) if x in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


@dataclass
class PRF:
    """Counts of true positives, false positives and false negatives, with the derived scores.

    Conventions: precision is 1.0 when nothing was predicted (no false claim was made), recall is 1.0
    when there was nothing to find; F1 is 0.0 when both are 0.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self) -> dict[str, float | int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


def match_spans(gold: Sequence[Span], predicted: Sequence[Span], *, same_kind: bool = True) -> dict[str, PRF]:
    """Per-kind counts, matching one-to-one by overlap (and by kind when `same_kind`).

    A gold span matched by a prediction of another kind counts as a false negative of the gold kind and a
    false positive of the predicted kind under `same_kind=True`; with `same_kind=False` kinds are ignored for
    matching (the "was it masked at all" view) and counts are attributed to the gold kind, unmatched
    predictions to their own kind.
    """
    out: dict[str, PRF] = {}
    used: set[int] = set()
    for g in sorted(gold, key=lambda s: (s.start, s.end)):
        hit = next((i for i, p in enumerate(predicted)
                    if i not in used and p.overlaps(g) and (not same_kind or p.kind == g.kind)), None)
        prf = out.setdefault(g.kind, PRF())
        if hit is None:
            prf.fn += 1
        else:
            used.add(hit)
            prf.tp += 1
    for i, p in enumerate(predicted):
        if i not in used:
            out.setdefault(p.kind, PRF()).fp += 1
    return out


def merge(into: dict[str, PRF], more: dict[str, PRF]) -> dict[str, PRF]:
    for k, v in more.items():
        into[k] = into.get(k, PRF()) + v
    return into


def micro(per_kind: dict[str, PRF]) -> PRF:
    total = PRF()
    for v in per_kind.values():
        total = total + v
    return total
