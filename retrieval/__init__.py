"""Retrieval: chunking (tiktoken), embeddings (sentence-transformers), OpenSearch kNN / BM25 / hybrid, RAG.

Entry points: :class:`retrieval.service.KnowledgeRetriever` (search with a principal's row scope),
:func:`retrieval.rag.answer_context` (passages + a token-budgeted context string) and
:class:`retrieval.ingest.Ingestor` (bulk, resumable, incremental ingestion).
"""
