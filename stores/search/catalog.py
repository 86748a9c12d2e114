"""Every search index family of the data tier: logical name -> IndexSpec (aliases are `<prefix>-<name>`)."""

from __future__ import annotations

from stores.search import mappings as m
from stores.search.indexes import IndexSpec

CHUNKS = "chunks"
TRANSACTIONS = "transactions"
USERS = "users"
AUDIT_LOGS = "audit-logs"
CREDIT_REPORTS = "credit-reports"
DISPUTES = "disputes"
INGEST_STATE = "ingest-state"


def chunks_spec(dim: int = 384, method: m.KnnMethod | None = None, *, model: str = "all-MiniLM-L6-v2") -> IndexSpec:
    return IndexSpec(name=CHUNKS, body=m.chunks_body(dim, method, model=model), schema_version=1)


def chunks_spec_from_meta(meta: dict, *, graph: dict[str, int] | None = None) -> IndexSpec:
    """The spec an existing knowledge index was built with (its `_meta`): model, dim and kNN method;
    `graph` (`m`, `ef_construction`) replaces the HNSW parameters and keeps engine and space."""
    method = m.KnnMethod.from_body(meta["knn_method"]) if meta.get("knn_method") else m.KnnMethod()
    if graph:
        method = m.KnnMethod(**{**method.model_dump(), **graph})
    return chunks_spec(int(meta.get("dim", 384)), method, model=meta.get("embedding_model") or "all-MiniLM-L6-v2")


def static_specs() -> dict[str, IndexSpec]:
    """Index families whose body does not depend on the embedding model."""
    return {
        TRANSACTIONS: IndexSpec(name=TRANSACTIONS, body=m.transactions_body()),
        USERS: IndexSpec(name=USERS, body=m.users_body()),
        # v2 adds `redactions` (kinds and counts), put on an existing v1 index by `IndexManager.ensure`.
        AUDIT_LOGS: IndexSpec(name=AUDIT_LOGS, body=m.audit_logs_body(), schema_version=2),
        CREDIT_REPORTS: IndexSpec(name=CREDIT_REPORTS, body=m.credit_reports_body()),
        DISPUTES: IndexSpec(name=DISPUTES, body=m.disputes_body()),
        INGEST_STATE: IndexSpec(name=INGEST_STATE, body=m.ingest_state_body()),
    }


def all_specs(dim: int = 384, method: m.KnnMethod | None = None) -> dict[str, IndexSpec]:
    return {CHUNKS: chunks_spec(dim, method), **static_specs()}
