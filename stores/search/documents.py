"""Documents of one index family: versioned bulk writes, searches, reads by id, refresh.

The one place that writes documents in bulk and runs queries (built by the callers) against an alias.
Every write carries an external version (`version_type=external_gte`, see `stores.search.indexes`): a
write loses only to a newer version already stored, which is not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stores.search.client import SearchStore

#: Bulk writes of big batches (embeddings) may take longer than the client's default timeout.
BULK_TIMEOUT_S = 120


@dataclass(frozen=True)
class VersionedDoc:
    """One document to write: its id, the version it carries and its body."""

    id: str
    version: int
    body: dict[str, Any]


@dataclass
class WriteResult:
    """What a bulk write did: how many documents it wrote (or found newer), and why the others failed."""

    written: int = 0
    #: document id -> "error type: reason" (never the document itself)
    failed: dict[str, str] = field(default_factory=dict)


def _write_action(index: str, doc_id: str, version: int) -> dict[str, Any]:
    return {"index": {"_index": index, "_id": doc_id, "version": int(version), "version_type": "external_gte"}}


def _stale(item: dict[str, Any]) -> bool:
    """Refused only because the index already holds a newer version."""
    return item.get("status") == 409 or (item.get("error") or {}).get("type") == "version_conflict_engine_exception"


class SearchIndex:
    """One index family (`<prefix>-<name>`) of a SearchStore: reads through the alias, writes to it or to a
    concrete generation (a rebuild filling a new index)."""

    def __init__(self, store: SearchStore, name: str) -> None:
        self.store = store
        self.name = name
        self.alias = store.index_name(name)

    async def write(self, docs: Iterable[VersionedDoc], *, index: str | None = None) -> WriteResult:
        """Index `docs` in one bulk request; a document the index holds newer counts as written."""
        target = index or self.alias
        lines: list[dict[str, Any]] = []
        for d in docs:
            lines += [_write_action(target, d.id, d.version), d.body]
        if not lines:
            return WriteResult()
        res = await self.store.call(self.store.os.bulk(body=lines, request_timeout=BULK_TIMEOUT_S))
        out = WriteResult(written=len(lines) // 2)
        if res.get("errors"):
            for item in res["items"]:
                op = item.get("index", {})
                if op.get("error") and not _stale(op):
                    err = op["error"]
                    out.failed.setdefault(str(op["_id"]), f"{err.get('type')}: {err.get('reason', '')}"[:300])
            out.written -= len(out.failed)
        return out

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """The raw search response for a query body; NotFound when the index does not exist."""
        return await self.store.call(self.store.os.search(index=self.alias, body=body))

    async def sources(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        """`fields` of the documents with these ids that exist; NotFound when the index does not exist."""
        res = await self.store.call(self.store.os.mget(index=self.alias, body={"ids": list(ids)},
                                                       _source_includes=list(fields)))
        return {d["_id"]: d.get("_source", {}) for d in res["docs"] if d.get("found")}

    async def refresh(self) -> None:
        """Make every write so far visible to searches."""
        await self.store.call(self.store.os.indices.refresh(index=self.alias))
