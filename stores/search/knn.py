"""Query builders: row-scope filters, filtered kNN (filter inside the knn clause), BM25, exact kNN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stores.scope import RowScope

MATCH_NONE: dict[str, Any] = {"bool": {"must_not": [{"match_all": {}}]}}


def scope_filter(scope: RowScope, *, user_field: str = "user_id", public_field: str | None = "visibility",
                 public_value: str = "public") -> dict[str, Any] | None:
    """The OpenSearch filter for a row scope: `user_id IN scope OR visibility == public`.

    None means "no restriction" (staff scopes). An empty scope still sees public documents, and
    matches nothing at all when the index has no public documents (`public_field=None`).
    """
    if scope.all_users:
        return None
    should: list[dict[str, Any]] = []
    if scope.user_ids:
        should.append({"terms": {user_field: sorted(str(u) for u in scope.user_ids)}})
    if public_field:
        should.append({"term": {public_field: public_value}})
    if not should:
        return MATCH_NONE
    return {"bool": {"should": should, "minimum_should_match": 1}}


def combine(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """AND of the given filters, ignoring None."""
    parts = [f for f in filters if f]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}


def knn_query(field: str, vector: Sequence[float], k: int, *, filter: dict[str, Any] | None = None,
              ef_search: int | None = None) -> dict[str, Any]:
    """Approximate kNN with efficient filtering: the filter is applied while traversing the graph
    (lucene/faiss engines), so k hits come back whenever k documents match the filter."""
    clause: dict[str, Any] = {"vector": [float(x) for x in vector], "k": k}
    if filter:
        clause["filter"] = filter
    if ef_search:
        clause["method_parameters"] = {"ef_search": ef_search}
    return {"knn": {field: clause}}


def exact_knn_query(field: str, vector: Sequence[float], *, filter: dict[str, Any] | None = None,
                    space_type: str = "cosinesimil") -> dict[str, Any]:
    """Exact (brute-force) scoring with the k-NN plugin's `knn_score` script over the filtered set.

    The script scores like the lucene engine (3.x): see `similarity_from_engine`.
    """
    return {"script_score": {
        "query": {"bool": {"filter": [filter]}} if filter else {"match_all": {}},
        "script": {"lang": "knn", "source": "knn_score",
                   "params": {"field": field, "query_value": [float(x) for x in vector], "space_type": space_type}},
    }}


def bm25_query(text: str, *, fields: Sequence[str] = ("title^2", "text"),
               filter: dict[str, Any] | None = None) -> dict[str, Any]:
    """BM25 over the text fields; the scope filter sits in the bool `filter` (no scoring, no post_filter)."""
    must = {"multi_match": {"query": text, "fields": list(fields), "type": "best_fields", "tie_breaker": 0.3}}
    query: dict[str, Any] = {"bool": {"must": [must]}}
    if filter:
        query["bool"]["filter"] = [filter]
    return query


def similarity_from_engine(score: float, space_type: str = "cosinesimil") -> float:
    """Undo the engine's score transform (lucene kNN and the exact script agree in 3.x).

    cosinesimil: (1 + cos) / 2 -> cos in [-1, 1]; innerproduct: dot + 1 (dot >= 0) or 1 / (1 - dot)
    -> dot; l2: 1 / (1 + squared distance) is already a similarity in (0, 1] and is kept.
    """
    if space_type == "cosinesimil":
        return 2.0 * score - 1.0
    if space_type == "innerproduct":
        return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
    return score


def cosine_from_lucene(score: float, space_type: str = "cosinesimil") -> float:
    """Kept for callers of the old name: see `similarity_from_engine`."""
    return similarity_from_engine(score, space_type)


def terms_filters(filters: dict[str, Any]) -> list[dict[str, Any]]:
    """`{"field": value | [values] | {"gte":..,"lt":..}}` -> term/terms/range clauses."""
    out: list[dict[str, Any]] = []
    for field, value in filters.items():
        if isinstance(value, dict):
            out.append({"range": {field: value}})
        elif isinstance(value, list | tuple | set | frozenset):
            out.append({"terms": {field: sorted(str(v) for v in value)}})
        else:
            out.append({"term": {field: value}})
    return out
