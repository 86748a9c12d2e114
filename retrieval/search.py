"""Search over one index family: kNN (filter inside the knn clause), BM25, and hybrid with fusion.

Scores by mode: `knn` the similarity of the index's space (cosinesimil: cosine in [-1, 1];
innerproduct: the dot product; l2: 1 / (1 + squared distance)); `bm25` the raw BM25 score; `hybrid`
the fused score (min-max: [0, 1]; RRF: sum of 1/(60 + rank)). `min_score` applies on that scale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from retrieval.errors import IndexNotBuilt, InvalidQuery
from retrieval.fusion import fuse_minmax, fuse_rrf
from stores.errors import NotFound
from stores.search.client import SearchStore
from stores.search.documents import SearchIndex
from stores.search.knn import bm25_query, combine, exact_knn_query, knn_query, similarity_from_engine, terms_filters

Mode = Literal["knn", "bm25", "hybrid"]
Fusion = Literal["minmax", "rrf"]


@dataclass(frozen=True)
class IndexProfile:
    """How to search one index family."""

    name: str  # logical name; the alias is `<prefix>-<name>`
    filterable: dict[str, str]
    vector_field: str = "embedding"
    text_fields: tuple[str, ...] = ("title^2", "text")
    highlight_fields: tuple[str, ...] = ("text",)
    source_excludes: tuple[str, ...] = ("embedding",)
    space_type: str = "cosinesimil"
    extra: dict[str, Any] = field(default_factory=dict)


class Hit(BaseModel):
    id: str
    score: float
    source: dict[str, Any]
    highlights: list[str] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)  # per retriever: knn (cosine), bm25 (raw)


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the kNN and BM25 lists in the fused score."""

    knn: float = 0.5
    bm25: float = 0.5


class Searcher:
    """Runs kNN / BM25 / hybrid / exact queries against `<prefix>-<profile.name>`."""

    def __init__(self, store: SearchStore, profile: IndexProfile, *, candidates: int = 50,
                 ef_search: int | None = 100, weights: HybridWeights | None = None) -> None:
        self.store = store
        self.profile = profile
        self.index = SearchIndex(store, profile.name)
        self.alias = self.index.alias
        self.candidates = candidates
        self.ef_search = ef_search
        self.weights = weights or HybridWeights()
        #: What an operator runs when the index is missing (shown in the IndexNotBuilt error).
        self.build_command = "kredete ingest" if profile.name == "chunks" else f"kredete search sync {profile.name}"

    def build_filter(self, scope_filter: dict[str, Any] | None,
                     filters: dict[str, Any] | None) -> dict[str, Any] | None:
        """AND of the scope filter and field filters; unknown fields are refused, not ignored."""
        filters = filters or {}
        unknown = sorted(set(filters) - set(self.profile.filterable))
        if unknown:
            raise InvalidQuery(f"cannot filter {self.alias} on unknown field(s) {unknown}; "
                               f"filterable: {sorted(self.profile.filterable)}")
        return combine(scope_filter, *terms_filters(filters))

    async def hits(self, body: dict[str, Any], size: int) -> list[dict[str, Any]]:
        """The raw hits of a query body (size and source excludes added); IndexNotBuilt when missing."""
        body = {"size": size, "_source": {"excludes": list(self.profile.source_excludes)}, **body}
        try:
            res = await self.index.search(body)
        except NotFound as exc:
            raise IndexNotBuilt(self.alias, self.build_command) from exc
        return res["hits"]["hits"]

    def _highlight(self, text: str | None) -> dict[str, Any]:
        if not text or not self.profile.highlight_fields:
            return {}
        fields = {f: {"fragment_size": 160, "number_of_fragments": 2} for f in self.profile.highlight_fields}
        hq = {"multi_match": {"query": text, "fields": list(self.profile.highlight_fields)}}
        return {"highlight": {"fields": fields, "highlight_query": hq, "pre_tags": ["**"], "post_tags": ["**"]}}

    @staticmethod
    def _hl(raw: dict[str, Any]) -> list[str]:
        return [frag for frags in raw.get("highlight", {}).values() for frag in frags]

    async def knn(self, vector: Sequence[float], k: int, flt: dict[str, Any] | None, *,
                  text: str | None = None) -> list[Hit]:
        """Top-k by the index's space; `text` only drives highlighting."""
        q = knn_query(self.profile.vector_field, vector, k, filter=flt, ef_search=self.ef_search)
        raw = await self.hits({"query": q, **self._highlight(text)}, k)
        out = []
        for h in raw:
            sim = similarity_from_engine(float(h["_score"]), self.profile.space_type)
            out.append(Hit(id=h["_id"], score=sim, source=h["_source"], highlights=self._hl(h), scores={"knn": sim}))
        return out

    async def exact(self, vector: Sequence[float], k: int, flt: dict[str, Any] | None) -> list[Hit]:
        """Brute-force top-k under the index's space (ground truth for recall), scored like `knn`."""
        q = exact_knn_query(self.profile.vector_field, vector, filter=flt, space_type=self.profile.space_type)
        raw = await self.hits({"query": q}, k)
        st = self.profile.space_type
        return [Hit(id=h["_id"], score=similarity_from_engine(float(h["_score"]), st), source=h["_source"])
                for h in raw]

    async def bm25(self, text: str, k: int, flt: dict[str, Any] | None, *, highlight: bool = True) -> list[Hit]:
        q = bm25_query(text, fields=self.profile.text_fields, filter=flt)
        raw = await self.hits({"query": q, **(self._highlight(text) if highlight else {})}, k)
        return [Hit(id=h["_id"], score=float(h["_score"]), source=h["_source"], highlights=self._hl(h),
                    scores={"bm25": float(h["_score"])}) for h in raw]

    async def hybrid(self, text: str, vector: Sequence[float], k: int, flt: dict[str, Any] | None, *,
                     fusion: Fusion = "minmax") -> list[Hit]:
        """Both retrievers fetch `max(k, candidates)` hits concurrently; the lists are fused client-side;
        highlights are then fetched for the final k only."""
        n = max(k, self.candidates)
        knn_hits, bm25_hits = await asyncio.gather(self.knn(vector, n, flt), self.bm25(text, n, flt, highlight=False))
        lists = [[(h.id, h.score) for h in knn_hits], [(h.id, h.score) for h in bm25_hits]]
        w = [self.weights.knn, self.weights.bm25]
        fused = fuse_minmax(lists, w) if fusion == "minmax" else fuse_rrf(lists, weights=w)
        by_id: dict[str, Hit] = {}
        for h in (*bm25_hits, *knn_hits):
            prev = by_id.get(h.id)
            if prev is None:
                by_id[h.id] = h.model_copy(deep=True)
            else:
                prev.scores.update(h.scores)
                prev.highlights = prev.highlights or h.highlights
        out = []
        for doc_id, score in fused[:k]:
            hit = by_id[doc_id]
            hit.score = score
            out.append(hit)
        if out and self.profile.highlight_fields:
            body = {"query": {"ids": {"values": [h.id for h in out]}}, "_source": False, **self._highlight(text)}
            hl = {h["_id"]: self._hl(h) for h in await self.hits(body, len(out))}
            for h in out:
                h.highlights = hl.get(h.id, [])
        return out

    async def search(self, *, mode: Mode, k: int, flt: dict[str, Any] | None, text: str | None = None,
                     vector: Sequence[float] | None = None, fusion: Fusion = "minmax",
                     min_score: float | None = None) -> list[Hit]:
        if mode == "knn":
            hits = await self.knn(_need(vector, "vector"), k, flt, text=text)
        elif mode == "bm25":
            hits = await self.bm25(_need(text, "text"), k, flt)
        elif mode == "hybrid":
            hits = await self.hybrid(_need(text, "text"), _need(vector, "vector"), k, flt, fusion=fusion)
        else:
            raise InvalidQuery(f"unknown mode {mode!r}; use knn, bm25 or hybrid")
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        return hits


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise InvalidQuery(f"this search mode needs a {what}")
    return value
