"""`KnowledgeRetriever`: the RAG search API used by the `search_knowledge` tool and by services.

The caller passes the principal's :class:`RowScope` (built from the verified token, never from model
input). It becomes a filter inside the kNN clause and inside the BM25 bool filter, so a principal
sees public knowledge-base chunks plus chunks of users in scope, and k hits whenever k match.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from config.settings import configured
from retrieval.documents import DOC_TYPES
from retrieval.encoder import CachedQueryEncoder, Encoder
from retrieval.errors import IndexNotBuilt, InvalidQuery
from retrieval.search import Fusion, HybridWeights, IndexProfile, Mode, Searcher
from retrieval.token_count import count_tokens
from stores.errors import InvalidData
from stores.scope import RowScope
from stores.search.catalog import CHUNKS, chunks_spec
from stores.search.indexes import IndexManager
from stores.search.knn import scope_filter
from stores.search.mappings import KnnMethod, filterable_fields

if TYPE_CHECKING:
    from stores.cache import CacheStore
    from stores.search import SearchStore

MAX_K = 50
MAX_QUERY_CHARS = 2000
MAX_QUERY_TOKENS = 256
#: How long the index's kNN method (read from its `_meta`) is trusted before it is read again.
METHOD_TTL_S = 60.0


class Passage(BaseModel):
    """One retrieved chunk. `text` is PII-redacted at ingestion; `citation` is stable (`kb:fx-fees#1`)."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    source_id: str
    doc_type: str
    user_id: str | None = None
    version: str
    title: str
    text: str
    score: float
    citation: str
    highlights: list[str] = Field(default_factory=list)
    char_start: int = 0
    char_end: int = 0
    scores: dict[str, float] = Field(default_factory=dict)


class RetrieverConfig(BaseModel):
    """Tuning knobs; defaults are what the tests and benchmark use."""

    candidates: int = Field(50, ge=1, le=1000, description="hits fetched per retriever before fusion")
    ef_search: int | None = Field(default_factory=partial(configured, "knn_ef_search"), ge=1, le=4096,
                                  description="kNN candidates per query (KREDETE_KNN_EF_SEARCH)")
    knn_weight: float = Field(0.5, ge=0)
    bm25_weight: float = Field(0.5, ge=0)


class KnowledgeRetriever:
    """Search knowledge chunks with a principal's row scope.

    `stores` is a :class:`stores.registry.Stores` (uses `.search` and, when connected, `.cache` for
    query-embedding caching) or a bare SearchStore. Raises :class:`retrieval.errors.InvalidQuery` for
    bad input, :class:`retrieval.errors.IndexNotBuilt` (a `StoreUnavailable`) when the index was never
    built, `StoreUnavailable` when OpenSearch is down. The kNN space comes from the index's `_meta`.
    """

    def __init__(self, stores: Any, encoder: Encoder, *, config: RetrieverConfig | None = None,
                 cache: CacheStore | None = None) -> None:
        search = getattr(stores, "search", stores)
        if search is None:
            raise InvalidData("KnowledgeRetriever needs a connected search store", store="retrieval")
        self.store: SearchStore = search
        cache = cache if cache is not None else getattr(stores, "cache", None)
        if cache is not None and not isinstance(encoder, CachedQueryEncoder):
            encoder = CachedQueryEncoder(encoder, cache)
        self.encoder = encoder
        self.config = config or RetrieverConfig()
        self._spec = chunks_spec(encoder.dim)
        self.profile = IndexProfile(name=CHUNKS, filterable=filterable_fields(self._spec.body))
        self.searcher = Searcher(self.store, self.profile, candidates=self.config.candidates,
                                 ef_search=self.config.ef_search,
                                 weights=HybridWeights(self.config.knn_weight, self.config.bm25_weight))
        self._method: KnnMethod | None = None
        self._method_at = 0.0

    async def index_method(self) -> KnnMethod:
        """The kNN method the index was built with (its `_meta`), so scores and exact search use its space."""
        if self._method is not None and time.monotonic() - self._method_at < METHOD_TTL_S:
            return self._method
        meta = await IndexManager(self.store).meta(self._spec)
        if meta is None:
            raise IndexNotBuilt(self.searcher.alias)
        if int(meta.get("dim", self.encoder.dim)) != self.encoder.dim:
            raise InvalidData(f"{self.searcher.alias} holds {meta.get('dim')}-dimensional vectors of "
                              f"{meta.get('embedding_model')}; this retriever encodes {self.encoder.dim} "
                              f"dimensions with {self.encoder.name}", store="retrieval")
        built_by = meta.get("embedding_model")
        if built_by and built_by != self.encoder.name:  # vectors of two encoders never mix in one ranking
            raise InvalidData(f"{self.searcher.alias} holds vectors of {built_by}; this retriever encodes with "
                              f"{self.encoder.name}: set KREDETE_ENCODER to the index's encoder, or re-embed "
                              "the index with `kredete ingest --reset`", store="retrieval")
        self._method = KnnMethod.from_body(meta.get("knn_method") or {})
        self._method_at = time.monotonic()
        self.profile = replace(self.profile, space_type=self._method.space_type)
        self.searcher.profile = self.profile
        return self._method

    @staticmethod
    def validate(query: str, k: int, mode: str, fusion: str, min_score: float | None,
                 doc_types: list[str] | None) -> str:
        """The normalised query; raises InvalidQuery with a message the caller can act on."""
        if not isinstance(query, str):
            raise InvalidQuery("query must be a string")
        q = " ".join(query.split())
        if not q:
            raise InvalidQuery("query is empty")
        if len(q) > MAX_QUERY_CHARS or (n := count_tokens(q)) > MAX_QUERY_TOKENS:
            size = f"{len(q)} characters" if len(q) > MAX_QUERY_CHARS else f"{n} tokens"
            raise InvalidQuery(f"query is too long ({size}); limits: {MAX_QUERY_CHARS} characters, "
                               f"{MAX_QUERY_TOKENS} tokens")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidQuery(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        if mode not in ("knn", "bm25", "hybrid"):
            raise InvalidQuery(f"unknown mode {mode!r}; use knn, bm25 or hybrid")
        if fusion not in ("minmax", "rrf"):
            raise InvalidQuery(f"unknown fusion {fusion!r}; use minmax or rrf")
        if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)
                                      or not math.isfinite(min_score)):
            raise InvalidQuery(f"min_score must be a finite number, got {min_score!r}")
        if doc_types is not None:
            bad = sorted(set(doc_types) - set(DOC_TYPES))
            if bad or not doc_types:
                raise InvalidQuery(f"unknown doc_types {bad}; known: {list(DOC_TYPES)}" if bad
                                   else "doc_types, when given, must not be empty")
        return q

    async def search(self, query: str, scope: RowScope, *, k: int = 5, mode: Mode = "hybrid",
                     fusion: Fusion = "minmax", min_score: float | None = None,
                     doc_types: list[str] | None = None) -> list[Passage]:
        """Top-k passages visible to `scope`, best first.

        Scores: `knn` the similarity of the index's space (cosine in [-1, 1] by default, see
        `retrieval.search`); `bm25` raw BM25; `hybrid` fused ([0, 1] for minmax, RRF sums for rrf).
        `min_score` drops passages below it on that scale (so fewer than k may return).
        """
        q = self.validate(query, k, mode, fusion, min_score, doc_types)
        if not isinstance(scope, RowScope):
            raise InvalidQuery("scope must be a RowScope built from the caller's token")
        flt = self.searcher.build_filter(scope_filter(scope), {"doc_type": doc_types} if doc_types else None)
        if mode != "bm25":
            await self.index_method()
        vector = None if mode == "bm25" else (await self.encoder.embed_query(q)).tolist()
        hits = await self.searcher.search(mode=mode, k=k, flt=flt, text=q, vector=vector, fusion=fusion,
                                          min_score=min_score)
        return [_passage(h.source, h.score, h.highlights, h.scores, h.id) for h in hits]


def _passage(src: dict[str, Any], score: float, highlights: list[str], scores: dict[str, float],
             hit_id: str) -> Passage:
    cid = src.get("chunk_id", hit_id)
    return Passage(chunk_id=cid, source_id=src["source_id"], doc_type=src["doc_type"], user_id=src.get("user_id"),
                   version=str(src.get("version", "")), title=src.get("title", ""), text=src["text"],
                   score=round(float(score), 6), citation=cid, highlights=highlights,
                   char_start=int(src.get("char_start", 0)), char_end=int(src.get("char_end", 0)),
                   scores={k: round(v, 6) for k, v in scores.items()})
