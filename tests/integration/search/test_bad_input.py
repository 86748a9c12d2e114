"""Bad input and failure modes give clear, typed errors."""

from __future__ import annotations

import pytest

from guards.pipeline import safe_message
from retrieval.errors import IndexNotBuilt, InvalidQuery
from retrieval.service import KnowledgeRetriever
from stores.errors import InvalidData, NotFound, StoreUnavailable
from stores.scope import RowScope
from stores.search import SearchStore

ANY = RowScope.none()


@pytest.mark.parametrize(("query", "kw", "message"), [
    ("", {}, "query is empty"),
    ("   \n\t ", {}, "query is empty"),
    ("word " * 5000, {}, "too long"),
    ("credit " * 300, {}, "too long"),
    ("ok", {"k": 0}, "k must be"),
    ("ok", {"k": 51}, "k must be"),
    ("ok", {"k": True}, "k must be"),
    ("ok", {"mode": "fuzzy"}, "unknown mode"),
    ("ok", {"fusion": "max"}, "unknown fusion"),
    ("ok", {"min_score": float("nan")}, "min_score"),
    ("ok", {"doc_types": ["tweets"]}, "unknown doc_types"),
    ("ok", {"doc_types": []}, "must not be empty"),
])
async def test_bad_queries(retriever, query, kw, message):
    with pytest.raises(InvalidQuery, match=message):
        await retriever.search(query, ANY, **kw)


async def test_invalid_query_is_an_invalid_data_store_error(retriever):
    with pytest.raises(InvalidData):
        await retriever.search("", ANY)


async def test_scope_must_be_a_row_scope(retriever):
    with pytest.raises(InvalidQuery, match="RowScope"):
        await retriever.search("ok", {"all_users": True})  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["hybrid", "bm25"])
async def test_missing_index_says_run_ingest(search_store, encoder, mode):
    """A missing index is an operator's job (build it), not "no such record in your scope"."""
    store = SearchStore(search_store._url, prefix=f"{search_store.prefix}-empty")
    store.client = search_store.client  # same connection, a prefix with no index
    with pytest.raises(IndexNotBuilt, match="kredete ingest") as missing:
        await KnowledgeRetriever(store, encoder).search("fees", ANY, mode=mode)
    assert isinstance(missing.value, StoreUnavailable) and not isinstance(missing.value, NotFound)
    assert safe_message(missing.value) == ("error", "search index not built; run `kredete ingest`")


async def test_opensearch_down_is_store_unavailable(encoder):
    store = SearchStore("http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.connect()
    await store.close()  # connect() left its client open
    from opensearchpy import AsyncOpenSearch

    store.client = AsyncOpenSearch(hosts=["http://127.0.0.1:9"], timeout=1, max_retries=0)
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await KnowledgeRetriever(store, encoder).search("fees", ANY)
    finally:
        await store.close()
