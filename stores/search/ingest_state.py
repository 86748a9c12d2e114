"""The `ingest-state` index: checkpoints of ingestion runs and index syncs, and why documents were skipped.

One checkpoint per source (`checkpoint:<source>`): the last key a run got past, whether the run finished,
and optional counts. One skip record per skipped document (`error:<digest of source and id>`), rewritten
when it is skipped again. Tombstones and rebuild markers live in the same index (`stores.search.indexes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from stores.errors import NotFound
from stores.search.client import SearchStore
from stores.search.indexes import STATE, STATE_SPEC, IndexManager


class SkipRecord(BaseModel):
    """A document that was not indexed, and why."""

    source: str
    source_id: str
    reason: str


def _now() -> str:
    return datetime.now(UTC).isoformat()


class IngestState:
    """Checkpoints and skip records of one SearchStore (one prefix)."""

    def __init__(self, store: SearchStore) -> None:
        self.store = store
        self.alias = store.index_name(STATE)

    async def ensure(self) -> None:
        await IndexManager(self.store).ensure(STATE_SPEC)

    async def checkpoint(self, source: str) -> dict[str, Any] | None:
        """The stored checkpoint (`last_key`, `done`, `at`, `counts`), or None when there is none."""
        try:
            res = await self.store.call(self.store.os.get(index=self.alias, id=f"checkpoint:{source}"))
        except NotFound:
            return None
        return res.get("_source")

    async def save_checkpoint(self, source: str, last_key: str | None, *, done: bool = True,
                              counts: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"kind": "checkpoint", "source": source, "last_key": last_key, "done": done,
                                "at": _now()}
        if counts is not None:
            body["counts"] = counts
        await self.store.call(self.store.os.index(index=self.alias, id=f"checkpoint:{source}", body=body))

    async def record_skips(self, skips: Sequence[SkipRecord]) -> None:
        if not skips:
            return
        lines: list[dict[str, Any]] = []
        for s in skips:
            sid = hashlib.sha1(f"{s.source}\x00{s.source_id}".encode(), usedforsecurity=False).hexdigest()
            lines += [{"index": {"_index": self.alias, "_id": f"error:{sid}"}},
                      {"kind": "error", "source": s.source, "source_id": s.source_id, "reason": s.reason,
                       "at": _now()}]
        await self.store.call(self.store.os.bulk(body=lines))

    async def skips(self, source: str | None = None, limit: int = 100) -> list[SkipRecord]:
        """Recorded skips, newest first."""
        flt: list[dict[str, Any]] = [{"term": {"kind": "error"}}]
        if source:
            flt.append({"term": {"source": source}})
        await self.store.call(self.store.os.indices.refresh(index=self.alias))
        res = await self.store.call(self.store.os.search(
            index=self.alias, body={"size": limit, "query": {"bool": {"filter": flt}}, "sort": [{"at": "desc"}]}))
        return [SkipRecord(**{k: h["_source"][k] for k in ("source", "source_id", "reason")})
                for h in res["hits"]["hits"]]
