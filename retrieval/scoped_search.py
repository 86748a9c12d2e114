"""Structured search over one index family under the caller's scope (BM25 on its text fields, filters, sort).

The scope is a type built from the verified principal (`stores.scope`): a RowScope (inside the query) for
every index but the audit log, which is searched only under an AuditScope.
"""

from __future__ import annotations

from typing import Any

from retrieval.errors import InvalidQuery, ScopeRefused
from retrieval.search import IndexProfile, Searcher
from stores.scope import COMPLIANCE_ROLE, AuditScope, RowScope
from stores.search.catalog import AUDIT_LOGS, CREDIT_REPORTS, DISPUTES, TRANSACTIONS, USERS, static_specs
from stores.search.client import SearchStore
from stores.search.knn import scope_filter
from stores.search.mappings import filterable_fields

#: The fields BM25 searches, per index.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    TRANSACTIONS: ("description", "counterparty", "failure_reason"),
    AUDIT_LOGS: ("reason", "action", "resource", "actor_subject"),
    CREDIT_REPORTS: ("text",), DISPUTES: ("text",), USERS: ()}


def searcher_for(search: SearchStore, name: str) -> Searcher:
    spec = static_specs()[name]
    text = TEXT_FIELDS[name]
    highlight = tuple(f for f in text if spec.body["mappings"]["properties"][f].get("type") == "text")
    return Searcher(search, IndexProfile(name=name, filterable=filterable_fields(spec.body), text_fields=text,
                                         highlight_fields=highlight, source_excludes=()))


async def search_index(search: SearchStore, name: str, scope: RowScope | AuditScope, *, text: str | None = None,
                       filters: dict[str, Any] | None = None, k: int = 20,
                       sort: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Scoped structured search over one index (BM25 on its text fields when `text` is given).

    The audit-log index takes only an AuditScope; every other index a RowScope (inside the query).
    """
    if not 1 <= k <= 100:
        raise InvalidQuery("k must be from 1 to 100")
    if name == AUDIT_LOGS:
        if not isinstance(scope, AuditScope):
            raise ScopeRefused(f"audit logs are searchable only under a {COMPLIANCE_ROLE} scope")
        row_filter = None
    elif isinstance(scope, RowScope):
        row_filter = scope_filter(scope, public_field=None)
    else:
        raise ScopeRefused(f"{name} is searched with a RowScope built from the caller's token")
    s = searcher_for(search, name)
    flt = s.build_filter(row_filter, filters)
    if text:
        return [{**h.source, "_score": h.score, "_highlights": h.highlights} for h in await s.bm25(text, k, flt)]
    body: dict[str, Any] = {"query": {"bool": {"filter": [flt]}} if flt else {"match_all": {}}}
    if sort:
        body["sort"] = sort
    return [h["_source"] for h in await s.hits(body, k)]
