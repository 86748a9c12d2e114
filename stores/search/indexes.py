"""Index lifecycle: templates, versioned indices behind an alias, zero-downtime rebuild by alias swap.

Readers and writers always use the alias (`<prefix>-<name>`); the concrete index is
`<prefix>-<name>-<generation>` (six digits). A rebuild fills a new generation while the alias keeps
serving the old one, copies what was written meanwhile, then swaps the alias in one atomic call.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from stores.errors import InvalidData, NotFound, StoreUnavailable
from stores.search.client import SearchStore

_GEN = re.compile(r"-(\d{6})$")


class IndexSpec(BaseModel):
    """An index family: logical name, body factory output and a schema version kept in `_meta`."""

    name: str
    body: dict[str, Any]
    schema_version: int = 1

    def full_body(self) -> dict[str, Any]:
        mappings = dict(self.body["mappings"])
        mappings["_meta"] = {**mappings.get("_meta", {}), "schema_version": self.schema_version,
                             "family": self.name}
        return {"settings": self.body["settings"], "mappings": mappings}


class RebuildReport(BaseModel):
    alias: str
    old_index: str | None
    new_index: str
    old_count: int
    new_count: int
    caught_up: int
    seconds: float


Filler = Callable[[str], Awaitable[Any]]


class IndexManager:
    """Creates and rebuilds the indices of one SearchStore (one prefix)."""

    def __init__(self, store: SearchStore) -> None:
        self.store = store

    def alias(self, spec: IndexSpec) -> str:
        return self.store.index_name(spec.name)

    async def put_template(self, spec: IndexSpec) -> None:
        """Idempotent: PUT replaces the template with the same content."""
        alias = self.alias(spec)
        body = {"index_patterns": [f"{alias}-*"], "priority": 200, "template": spec.full_body(),
                "_meta": {"schema_version": spec.schema_version}}
        await self.store.call(self.store.os.indices.put_index_template(name=alias, body=body))

    async def current_index(self, spec: IndexSpec) -> str | None:
        """The concrete index behind the alias, or None when the alias does not exist yet."""
        alias = self.alias(spec)
        try:
            res = await self.store.call(self.store.os.indices.get_alias(name=alias))
        except NotFound:
            return None
        names = sorted(res)
        return names[-1] if names else None

    async def ensure(self, spec: IndexSpec) -> str:
        """Template + first generation + alias, when missing. Returns the concrete index name."""
        await self.put_template(spec)
        current = await self.current_index(spec)
        if current is not None:
            return current
        alias = self.alias(spec)
        if await self.store.call(self.store.os.indices.exists(index=alias)):
            raise InvalidData(f"{alias} is a concrete index, not an alias; delete or reindex it", store="opensearch")
        name = f"{alias}-000001"
        body = {**spec.full_body(), "aliases": {alias: {"is_write_index": True}}}
        try:
            await self.store.call(self.store.os.indices.create(index=name, body=body))
        except InvalidData as exc:  # a concurrent ensure() created it first
            if "already exists" not in str(exc):
                raise
        return name

    async def drop(self, spec: IndexSpec) -> None:
        """Delete every generation and the template (tests, `--reset`)."""
        alias = self.alias(spec)
        await self.store.call(self.store.os.indices.delete(index=f"{alias}-*", expand_wildcards="all",
                                                           ignore_unavailable=True))
        with contextlib.suppress(NotFound):
            await self.store.call(self.store.os.indices.delete_index_template(name=alias))

    async def count(self, index: str) -> int:
        await self.store.call(self.store.os.indices.refresh(index=index))
        res = await self.store.call(self.store.os.count(index=index))
        return int(res["count"])

    async def rebuild(self, spec: IndexSpec, fill: Filler | None = None, *, keep_old: bool = False) -> RebuildReport:
        """Build a new generation and swap the alias to it; the old generation serves until the swap.

        `fill(new_index)` loads the new index from the primary store; without it the documents are
        copied from the old generation (`_reindex`, e.g. after a mapping change). Documents written
        through the alias during the rebuild (their `indexed_at` is after the start) are copied over
        before the swap, and once more after it with `op_type=create` for the last instant. Without
        `fill`, the new generation must hold at least as many documents as the old one or the
        rebuild aborts, deleting the new index and leaving the alias untouched.
        """
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        started = datetime.now(UTC).isoformat()
        await self.put_template(spec)
        alias, old = self.alias(spec), await self.current_index(spec)
        gen = int(_GEN.search(old).group(1)) + 1 if old and _GEN.search(old) else 1
        new = f"{alias}-{gen:06d}"
        body = spec.full_body()
        body["settings"] = {**body["settings"], "refresh_interval": "-1"}
        await self.store.call(self.store.os.indices.create(index=new, body=body))
        try:
            old_count = await self.count(old) if old else 0
            if fill is not None:
                await fill(new)
            elif old:
                await self._reindex(old, new)
            caught = await self._reindex(old, new, since=started) if old else 0
            await self.store.call(self.store.os.indices.put_settings(index=new, body={"refresh_interval": "1s"}))
            new_count = await self.count(new)
            if fill is None and new_count < old_count:
                raise InvalidData(f"rebuild of {alias} copied {new_count} of {old_count} documents; aborted",
                                  store="opensearch")
        except BaseException:
            await self.store.call(self.store.os.indices.delete(index=new, ignore_unavailable=True))
            raise
        actions: list[dict[str, Any]] = [{"add": {"index": new, "alias": alias, "is_write_index": True}}]
        if old:
            actions.insert(0, {"remove": {"index": old, "alias": alias}})
        await self.store.call(self.store.os.indices.update_aliases(body={"actions": actions}))
        if old:
            caught += await self._reindex(old, new, since=started, create_only=True)
            new_count = await self.count(new)
            if not keep_old:
                await self.store.call(self.store.os.indices.delete(index=old, ignore_unavailable=True))
        return RebuildReport(alias=alias, old_index=old, new_index=new, old_count=old_count, new_count=new_count,
                             caught_up=caught, seconds=round(loop.time() - t0, 3))

    async def _reindex(self, src: str, dest: str, *, since: str | None = None, create_only: bool = False) -> int:
        await self.store.call(self.store.os.indices.refresh(index=src))
        source: dict[str, Any] = {"index": src}
        if since:
            source["query"] = {"range": {"indexed_at": {"gte": since}}}
        dest_body: dict[str, Any] = {"index": dest}
        if create_only:
            dest_body["op_type"] = "create"
        res = await self.store.call(self.store.os.reindex(
            body={"source": source, "dest": dest_body, "conflicts": "proceed"},
            wait_for_completion=True, refresh=True, request_timeout=600))
        failures = res.get("failures") or []
        real = [f for f in failures if f.get("status") != 409]
        if real:
            raise StoreUnavailable(f"reindex {src} -> {dest} had {len(real)} failures", store="opensearch")
        return int(res.get("created", 0)) + int(res.get("updated", 0))
