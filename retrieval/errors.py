"""Retrieval errors. They subclass the typed store errors so callers handle one family."""

from __future__ import annotations

from stores.errors import InvalidData, ScopeRefused, StoreUnavailable

__all__ = ["IndexNotBuilt", "InvalidQuery", "ScopeRefused"]


class InvalidQuery(InvalidData):
    """A search request the caller must fix: empty or huge query, k out of range, unknown filter field."""

    store = "retrieval"


class IndexNotBuilt(StoreUnavailable):
    """The search index behind an alias does not exist yet: an operator must build it, the caller
    cannot fix the request (so it is not a "not found in scope")."""

    store = "opensearch"

    def __init__(self, alias: str, command: str = "kredete ingest") -> None:
        super().__init__(f"search index {alias} does not exist; run `{command}`")
        self.alias = alias
        #: What the guard pipeline shows the agent (no internals beyond the command to run).
        self.public_message = f"search index not built; run `{command}`"
