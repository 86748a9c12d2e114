"""OpenSearch: transaction/user/audit search, credit-report full text, aggregations, kNN for RAG."""

from stores.search.client import SearchStore

__all__ = ["SearchStore"]
