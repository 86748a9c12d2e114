"""Index bodies (settings + mappings) for every search index, with the kNN method pinned explicitly."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from config.settings import configured

Engine = Literal["lucene", "faiss", "nmslib"]
Space = Literal["cosinesimil", "l2", "innerproduct"]


class KnnMethod(BaseModel):
    """HNSW parameters. `lucene` is pure Java (works everywhere); faiss/nmslib need native libraries.

    Every field defaults to its setting (`KREDETE_KNN_ENGINE`, `_SPACE`, `_M`, `_EF_CONSTRUCTION`), so every
    new knowledge index gets the configured graph; an existing index's method is read back with `from_body`.
    """

    model_config = ConfigDict(frozen=True)

    engine: Engine = Field(default_factory=partial(configured, "knn_engine"))
    space_type: Space = Field(default_factory=partial(configured, "knn_space"))
    m: int = Field(default_factory=partial(configured, "knn_m"), ge=2, le=128)
    ef_construction: int = Field(default_factory=partial(configured, "knn_ef_construction"), ge=8, le=4096)

    def body(self) -> dict[str, Any]:
        return {"name": "hnsw", "engine": self.engine, "space_type": self.space_type,
                "parameters": {"m": self.m, "ef_construction": self.ef_construction}}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> KnnMethod:
        """The method recorded in an index's `_meta` (so a rebuild keeps engine, space and graph)."""
        params = body.get("parameters") or {}
        return cls(engine=body.get("engine", "lucene"), space_type=body.get("space_type", "cosinesimil"),
                   **{k: params[k] for k in ("m", "ef_construction") if k in params})


#: Domain synonyms applied at query time only (so the index need not be rebuilt to change them).
SYNONYMS = [
    "mpesa, m-pesa, m pesa",
    "momo, mobile money",
    "fx, foreign exchange, exchange rate",
    "kyc, identity verification, know your customer",
    "ngn, naira",
    "ghs, cedi, cedis",
    "kes, shilling, shillings",
    "gbp, pound, pounds, sterling",
    "usdc, usdt, stablecoin",
    "uk, united kingdom, britain",
    "us, usa, united states",
]

ANALYSIS: dict[str, Any] = {
    "filter": {
        "english_stop": {"type": "stop", "stopwords": "_english_"},
        "english_light": {"type": "stemmer", "language": "light_english"},
        "english_possessive": {"type": "stemmer", "language": "possessive_english"},
        "domain_synonyms": {"type": "synonym_graph", "synonyms": SYNONYMS, "lenient": True},
    },
    "analyzer": {
        "kredete_text": {"type": "custom", "tokenizer": "standard",
                         "filter": ["english_possessive", "lowercase", "asciifolding", "english_stop",
                                    "english_light"]},
        "kredete_search": {"type": "custom", "tokenizer": "standard",
                           "filter": ["english_possessive", "lowercase", "asciifolding", "domain_synonyms",
                                      "english_stop", "english_light"]},
    },
    "normalizer": {"lower": {"type": "custom", "filter": ["lowercase", "asciifolding"]}},
}

TEXT = {"type": "text", "analyzer": "kredete_text", "search_analyzer": "kredete_search"}
TEXT_KW = {**TEXT, "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}
KW = {"type": "keyword"}
KW_LOWER = {"type": "keyword", "normalizer": "lower"}
DATE = {"type": "date"}
LONG = {"type": "long"}
INT = {"type": "integer"}


#: Search slow log of every index (the monitoring collector exports them per index; new generations get them).
SEARCH_SLOWLOG = {"search.slowlog.threshold.query.warn": "1s", "search.slowlog.threshold.query.info": "500ms",
                  "search.slowlog.threshold.fetch.warn": "500ms", "search.slowlog.threshold.fetch.info": "200ms"}


def _settings(*, knn: bool = False, shards: int = 1) -> dict[str, Any]:
    # No replica count here: the store adds KREDETE_SEARCH_REPLICAS when it creates an index.
    s: dict[str, Any] = {"number_of_shards": shards, "analysis": ANALYSIS, **SEARCH_SLOWLOG}
    if knn:
        s["knn"] = True
    return s


def chunks_body(dim: int, method: KnnMethod | None = None, *, model: str = "") -> dict[str, Any]:
    """Knowledge chunks: text for BM25, `embedding` for kNN, keyword fields for scope and filters."""
    method = method or KnnMethod()
    return {
        "settings": _settings(knn=True),
        "mappings": {
            "dynamic": "strict",
            "_meta": {"embedding_model": model, "dim": dim, "knn_method": method.body()},
            "properties": {
                "chunk_id": KW, "source_id": KW, "source_key": KW, "doc_type": KW, "user_id": KW,
                "visibility": KW, "version": KW, "title": TEXT_KW, "text": TEXT,
                "chunk_index": INT, "n_chunks": INT, "char_start": INT, "char_end": INT,
                "token_start": INT, "token_end": INT, "updated_at": DATE, "indexed_at": DATE, "content_sha": KW,
                "metadata": {"type": "flat_object"},
                "embedding": {"type": "knn_vector", "dimension": dim, "method": method.body()},
            },
        },
    }


def transactions_body() -> dict[str, Any]:
    """Transactions for support search and corridor analytics (amounts in integer minor units)."""
    return {"settings": _settings(), "mappings": {"dynamic": "strict", "properties": {
        "transaction_id": KW, "user_id": KW, "kind": KW, "status": KW, "corridor": KW, "currency": KW,
        "amount_minor": LONG, "fee_minor": LONG, "dest_currency": KW, "dest_amount_minor": LONG,
        "fx_rate": {"type": "scaled_float", "scaling_factor": 1_000_000}, "reference": KW_LOWER,
        "counterparty": TEXT, "description": TEXT, "failure_reason": TEXT, "created_at": DATE,
        "updated_at": DATE, "completed_at": DATE, "indexed_at": DATE}}}


def users_body() -> dict[str, Any]:
    """Users for staff search: profile facets only; names, emails and phones are never indexed."""
    return {"settings": _settings(), "mappings": {"dynamic": "strict", "properties": {
        "user_id": KW, "status": KW, "country": KW, "home_currency": KW, "kyc_level": KW,
        "deleted": {"type": "boolean"}, "created_at": DATE, "updated_at": DATE, "indexed_at": DATE}}}


def audit_logs_body() -> dict[str, Any]:
    """Audit trail for compliance officers: who did what, with which decision."""
    return {"settings": _settings(), "mappings": {"dynamic": "strict", "properties": {
        "audit_id": KW, "occurred_at": DATE, "actor_subject": KW, "actor_role": KW, "user_id": KW,
        "action": KW, "resource": KW, "args_digest": KW, "decision": KW, "reason": TEXT,
        "rows_returned": INT, "redaction_count": INT, "redactions": {"type": "object", "enabled": False},
        "latency_ms": INT, "request_id": KW, "indexed_at": DATE}}}


def credit_reports_body() -> dict[str, Any]:
    """Latest credit report versions as full text (rendered without identity, redacted) plus facets."""
    return {"settings": _settings(), "mappings": {"dynamic": "strict", "properties": {
        "report_id": KW, "user_id": KW, "bureau": KW, "country": KW, "score": INT, "version": KW,
        "pulled_at": DATE, "text": TEXT, "account_count": INT, "negative_items": INT, "indexed_at": DATE}}}


def disputes_body() -> dict[str, Any]:
    """Dispute cases for outcome analytics and staff search."""
    return {"settings": _settings(), "mappings": {"dynamic": "strict", "properties": {
        "case_id": KW, "user_id": KW, "bureau": KW, "reason": KW, "status": KW, "outcome": KW,
        "opened_at": DATE, "resolved_at": DATE, "days_open": INT, "text": TEXT, "indexed_at": DATE}}}


def ingest_state_body() -> dict[str, Any]:
    """Ingestion checkpoints and skipped-document records."""
    return {"settings": _settings(), "mappings": {"dynamic": "strict", "properties": {
        "kind": KW, "source": KW, "source_id": KW, "last_key": KW, "reason": TEXT, "done": {"type": "boolean"},
        "counts": {"type": "object", "enabled": False}, "at": DATE}}}


def filterable_fields(body: dict[str, Any]) -> dict[str, str]:
    """Top-level fields usable in term/range filters, with their type."""
    props = body["mappings"]["properties"]
    ok = {"keyword", "long", "integer", "date", "boolean", "scaled_float"}
    return {name: spec["type"] for name, spec in props.items() if spec.get("type") in ok}
