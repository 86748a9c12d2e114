"""Retrieval errors. They subclass the typed store errors so callers handle one family."""

from __future__ import annotations

from stores.errors import InvalidData


class InvalidQuery(InvalidData):
    """A search request the caller must fix: empty or huge query, k out of range, unknown filter field."""

    store = "retrieval"
