"""The search indexes the MCP server's tools read, kept in sync by the server process itself.

`search_audit_logs`' free-text query reads the audit-log index: without a sync next to the server it would
be missing on a fresh setup, and trail the audit trail forever after. The knowledge index (`search_knowledge`)
is built by `kredete ingest`; its credit-store changes follow `kredete ingest --follow`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retrieval.index_sync import DocIndexer
from retrieval.redactor import RedactionEngine
from stores.periodic import Jobs, Periodic
from stores.postgres.pool import PostgresStore
from stores.search.catalog import AUDIT_LOGS
from stores.search.client import SearchStore

#: Postgres-fed indexes a tool reads.
TOOL_INDEXES = (AUDIT_LOGS,)
#: One run may not take longer; a big backlog is caught up over several runs (the checkpoint moves per page).
RUN_TIMEOUT_S = 120.0
FIRST_RUN_AFTER_S = 2.0


class SearchSyncJobs(Jobs):
    """Every `interval` seconds, index the rows added since the last checkpoint (0: no job)."""

    def __init__(self, search: SearchStore, postgres: PostgresStore, *, redact: RedactionEngine, interval: float,
                 lag: timedelta | float, timeout: float = RUN_TIMEOUT_S) -> None:
        jobs: dict[str, Periodic] = {}
        if interval > 0:
            for name in TOOL_INDEXES:
                indexer = DocIndexer(search, name, redact=redact, lag=lag)

                async def sync(indexer: DocIndexer = indexer) -> dict[str, Any]:
                    out = await indexer.sync(postgres=postgres)
                    return {k: out[k] for k in ("indexed", "skipped", "checkpoint")}  # no skip reasons in logs

                # The first run waits a moment: a starting server answers its first requests first.
                jobs[name] = Periodic(f"search sync {name}", sync, interval=interval, timeout=timeout,
                                      delay=min(interval, FIRST_RUN_AFTER_S))
        super().__init__(jobs, task_prefix="search-job")
