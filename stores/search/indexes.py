"""Index lifecycle: templates, versioned indices behind an alias, zero-downtime rebuild by alias swap.

Readers and writers always use the alias (`<prefix>-<name>`); the concrete index is
`<prefix>-<name>-<generation>` (six digits). A rebuild fills a new generation while the alias keeps
serving the old one, copies what was written meanwhile, then swaps the alias in one atomic call.

Two rules make the copy safe while writers keep going:

* Every write carries an external version (`version_type=external_gte`, `stores.search.documents`):
  the source's own version where it has one (`updated_at`), else the write time (`version_now()`).
  Copies between generations keep those versions, so a copy never overwrites a newer document.
* Deletes go through `IndexManager.delete_where`, which records a tombstone (the query and its time)
  in the `ingest-state` index before deleting. A rebuild applies the tombstones recorded since it
  started to the new generation, before and after the swap, so a delete made during a rebuild does
  not come back. A tombstone only removes documents indexed before it (a re-written document stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from stores.errors import InvalidData, NotFound, StoreUnavailable
from stores.search import mappings
from stores.search.client import SearchStore

_GEN = re.compile(r"-(\d{6})$")
#: The family holding checkpoints, skip records, tombstones and rebuild markers.
STATE = "ingest-state"
#: Tombstones are kept this long (or longer, while a rebuild that may need them runs).
TOMBSTONE_TTL = timedelta(hours=1)
#: A rebuild also applies tombstones this much older than its start (a delete racing the start).
TOMBSTONE_MARGIN = timedelta(minutes=5)
_TOMBSTONE_BATCH = 50
_last_version = 0


def version_now() -> int:
    """A document version from the clock: microseconds since the epoch, increasing within the process."""
    global _last_version
    _last_version = max(time.time_ns() // 1000, _last_version + 1)
    return _last_version


def version_of(value: datetime | str | None) -> int:
    """A document version from a source timestamp (microseconds since the epoch); now when missing."""
    if value is None:
        return version_now()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


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


STATE_SPEC = IndexSpec(name=STATE, body=mappings.ingest_state_body())


class RebuildReport(BaseModel):
    alias: str
    old_index: str | None
    new_index: str
    old_count: int
    new_count: int
    caught_up: int
    deleted: int = 0
    seconds: float


Filler = Callable[[str], Awaitable[Any]]


class IndexManager:
    """Creates and rebuilds the indices of one SearchStore (one prefix)."""

    def __init__(self, store: SearchStore) -> None:
        self.store = store
        self._state_ready = False

    def alias(self, spec: IndexSpec) -> str:
        return self.store.index_name(spec.name)

    def body(self, spec: IndexSpec) -> dict[str, Any]:
        """The spec's body with this store's replica count (mappings never fix one)."""
        body = spec.full_body()
        body["settings"] = {**body["settings"], "number_of_replicas": self.store.replica_count()}
        return body

    @property
    def state_alias(self) -> str:
        return self.store.index_name(STATE)

    async def put_template(self, spec: IndexSpec) -> None:
        """Idempotent: PUT replaces the template with the same content."""
        alias = self.alias(spec)
        body = {"index_patterns": [f"{alias}-*"], "priority": 200, "template": self.body(spec),
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

    async def meta(self, spec: IndexSpec) -> dict[str, Any] | None:
        """`_meta` of the index behind the alias (model, dim, kNN method, schema version); None if missing."""
        current = await self.current_index(spec)
        if current is None:
            return None
        res = await self.store.call(self.store.os.indices.get_mapping(index=current))
        return dict(res[current]["mappings"].get("_meta") or {})

    async def ensure(self, spec: IndexSpec) -> str:
        """Template + first generation + alias, when missing; an older schema version gets the new
        fields (additive mapping change). Returns the concrete index name."""
        await self.put_template(spec)
        current = await self.current_index(spec)
        if current is not None:
            await self._migrate(spec, current)
            return current
        alias = self.alias(spec)
        if await self.store.call(self.store.os.indices.exists(index=alias)):
            raise InvalidData(f"{alias} is a concrete index, not an alias; delete or reindex it", store="opensearch")
        name = f"{alias}-000001"
        body = {**self.body(spec), "aliases": {alias: {"is_write_index": True}}}
        try:
            await self.store.call(self.store.os.indices.create(index=name, body=body))
        except InvalidData as exc:  # a concurrent ensure() created it first
            if "already exists" not in str(exc):
                raise
        else:
            await self.store.warn_if_underreplicated(name)
        return name

    async def _migrate(self, spec: IndexSpec, index: str) -> None:
        res = await self.store.call(self.store.os.indices.get_mapping(index=index))
        meta = res[index]["mappings"].get("_meta") or {}
        if int(meta.get("schema_version", 1)) >= spec.schema_version:
            return
        body = spec.full_body()["mappings"]
        try:
            await self.store.call(self.store.os.indices.put_mapping(
                index=index, body={"properties": body["properties"], "_meta": body["_meta"]}))
        except InvalidData as exc:
            raise InvalidData(f"{index} cannot take schema version {spec.schema_version} in place ({exc}); "
                              f"run `kredete search reindex {spec.name}`", store="opensearch") from exc

    async def drop(self, spec: IndexSpec) -> None:
        """Delete every generation and the template (tests, `--reset`)."""
        alias = self.alias(spec)
        await self.store.call(self.store.os.indices.delete(index=f"{alias}-*", expand_wildcards="all",
                                                           ignore_unavailable=True))
        with contextlib.suppress(NotFound):
            await self.store.call(self.store.os.indices.delete_index_template(name=alias))
        if spec.name == STATE:
            self._state_ready = False

    async def count(self, index: str) -> int:
        await self.store.call(self.store.os.indices.refresh(index=index))
        res = await self.store.call(self.store.os.count(index=index))
        return int(res["count"])

    # --- deletes and tombstones -----------------------------------------------------------------
    async def _ensure_state(self) -> None:
        if not self._state_ready:
            await self.ensure(STATE_SPEC)
            self._state_ready = True

    async def delete_where(self, spec: IndexSpec, query: dict[str, Any], *, refresh: bool = False) -> int:
        """Delete the documents matching `query` through the alias; returns how many.

        The tombstone is written first: a rebuild running now (or starting before this returns)
        applies it to its new generation.
        """
        await self._ensure_state()
        at = _iso(datetime.now(UTC))
        await self.store.call(self.store.os.index(
            index=self.state_alias, id=f"tombstone:{uuid.uuid4().hex}",
            body={"kind": "tombstone", "source": spec.name, "at": at, "counts": {"query": query}}))
        # delete_by_query sees the last refreshed state: without this, a document written a moment ago
        # (e.g. the version a new one supersedes) would survive its delete.
        await self.store.call(self.store.os.indices.refresh(index=self.alias(spec)))
        res = await self.store.call(self.store.os.delete_by_query(
            index=self.alias(spec), body={"query": query}, conflicts="proceed", refresh=refresh))
        return int(res.get("deleted", 0))

    async def _tombstones(self, family: str, since: datetime) -> list[tuple[str, dict[str, Any]]]:
        await self._ensure_state()
        await self.store.call(self.store.os.indices.refresh(index=self.state_alias))
        flt = [{"term": {"kind": "tombstone"}}, {"term": {"source": family}},
               {"range": {"at": {"gte": _iso(since)}}}]
        out: list[tuple[str, dict[str, Any]]] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": 1000, "query": {"bool": {"filter": flt}},
                                    "sort": [{"at": "asc"}, {"_id": "asc"}]}
            if after:
                body["search_after"] = after
            hits = (await self.store.call(self.store.os.search(index=self.state_alias, body=body)))["hits"]["hits"]
            out += [(h["_source"]["at"], h["_source"]["counts"]["query"]) for h in hits]
            if len(hits) < 1000:
                return out
            after = hits[-1]["sort"]

    async def _apply_tombstones(self, family: str, index: str, since: datetime) -> int:
        """Delete from `index` what each tombstone since `since` matched, if indexed before the tombstone."""
        tombs = await self._tombstones(family, since)
        deleted = 0
        for i in range(0, len(tombs), _TOMBSTONE_BATCH):
            should = [{"bool": {"filter": [q, {"bool": {"should": [
                {"range": {"indexed_at": {"lte": at}}},
                {"bool": {"must_not": [{"exists": {"field": "indexed_at"}}]}}], "minimum_should_match": 1}}]}}
                for at, q in tombs[i:i + _TOMBSTONE_BATCH]]
            res = await self.store.call(self.store.os.delete_by_query(
                index=index, body={"query": {"bool": {"should": should, "minimum_should_match": 1}}},
                conflicts="proceed", refresh=True))
            deleted += int(res.get("deleted", 0))
        return deleted

    async def prune_tombstones(self, spec: IndexSpec) -> None:
        """Drop tombstones older than the TTL, keeping those a running rebuild of `spec` may still need."""
        await self._ensure_state()
        cutoff = datetime.now(UTC) - TOMBSTONE_TTL
        # No rebuild running is the usual case: ignore=404 keeps the client from logging a warning for it
        marker = await self.store.call(self.store.os.get(index=self.state_alias, id=f"rebuild:{spec.name}",
                                                         ignore=404))
        if marker.get("found"):
            cutoff = min(cutoff, datetime.fromisoformat(marker["_source"]["at"]) - TOMBSTONE_MARGIN)
        flt = [{"term": {"kind": "tombstone"}}, {"term": {"source": spec.name}},
               {"range": {"at": {"lt": _iso(cutoff)}}}]
        await self.store.call(self.store.os.delete_by_query(
            index=self.state_alias, body={"query": {"bool": {"filter": flt}}}, conflicts="proceed"))

    # --- rebuild --------------------------------------------------------------------------------
    async def rebuild(self, spec: IndexSpec, fill: Filler | None = None, *, keep_old: bool = False) -> RebuildReport:
        """Build a new generation and swap the alias to it; the old generation serves until the swap.

        `fill(new_index)` loads the new index from the primary store (with the source's versions);
        without it the documents are copied from the old generation (`_reindex`, e.g. after a mapping
        change). Documents written through the alias during the rebuild (`indexed_at` after the start)
        are copied over before the swap and once more after it, by version, so neither an update
        nor a newer write in the new generation is lost; tombstones recorded since the start are
        applied at both points. A copy that does not account for every document aborts the rebuild,
        deleting the new index and leaving the alias untouched.
        """
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await self._ensure_state()
        marker = f"rebuild:{spec.name}"
        start = datetime.now(UTC)
        await self.store.call(self.store.os.index(index=self.state_alias, id=marker, refresh=True, body={
            "kind": "rebuild", "source": spec.name, "at": _iso(start)}))
        # Taken after the marker is visible, so a concurrent prune keeps every tombstone we need.
        started = datetime.now(UTC)
        since = started - TOMBSTONE_MARGIN
        try:
            report = await self._rebuild(spec, fill, keep_old, started, since)
        finally:
            with contextlib.suppress(NotFound):
                await self.store.call(self.store.os.delete(index=self.state_alias, id=marker))
        await self.prune_tombstones(spec)
        report.seconds = round(loop.time() - t0, 3)
        return report

    async def _rebuild(self, spec: IndexSpec, fill: Filler | None, keep_old: bool, started: datetime,
                       since: datetime) -> RebuildReport:
        await self.put_template(spec)
        alias, old = self.alias(spec), await self.current_index(spec)
        gen = int(_GEN.search(old).group(1)) + 1 if old and _GEN.search(old) else 1
        new = f"{alias}-{gen:06d}"
        body = self.body(spec)
        body["settings"] = {**body["settings"], "refresh_interval": "-1"}
        await self.store.call(self.store.os.indices.create(index=new, body=body))
        await self.store.warn_if_underreplicated(new)
        caught = deleted = 0
        try:
            old_count = await self.count(old) if old else 0
            if fill is not None:
                await fill(new)
            elif old:
                copied = await self._reindex(old, new)
                if copied["accounted"] < copied["total"]:
                    raise InvalidData(f"rebuild of {alias} copied {copied['accounted']} of {copied['total']} "
                                      "documents; aborted", store="opensearch")
            if old:
                caught = (await self._reindex(old, new, since=started))["written"]
            deleted = await self._apply_tombstones(spec.name, new, since)
            await self.store.call(self.store.os.indices.put_settings(index=new, body={"refresh_interval": "1s"}))
        except BaseException:
            await self.store.call(self.store.os.indices.delete(index=new, ignore_unavailable=True))
            raise
        await self._swap(spec, old, new)
        if old:
            # Writes that reached the old generation after the last copy: newer versions win.
            caught += (await self._reindex(old, new, since=started))["written"]
            deleted += await self._apply_tombstones(spec.name, new, since)
            if not keep_old:
                await self.store.call(self.store.os.indices.delete(index=old, ignore_unavailable=True))
        return RebuildReport(alias=alias, old_index=old, new_index=new, old_count=old_count,
                             new_count=await self.count(new), caught_up=caught, deleted=deleted, seconds=0.0)

    async def _swap(self, spec: IndexSpec, old: str | None, new: str) -> None:
        """Point the alias (reads and writes) at `new` in one atomic call."""
        actions: list[dict[str, Any]] = [{"add": {"index": new, "alias": self.alias(spec), "is_write_index": True}}]
        if old:
            actions.insert(0, {"remove": {"index": old, "alias": self.alias(spec)}})
        await self.store.call(self.store.os.indices.update_aliases(body={"actions": actions}))

    async def _reindex(self, src: str, dest: str, *, since: datetime | None = None) -> dict[str, int]:
        """Copy `src` into `dest` keeping each document's version; an older copy never overwrites."""
        await self.store.call(self.store.os.indices.refresh(index=src))
        source: dict[str, Any] = {"index": src}
        if since:
            source["query"] = {"range": {"indexed_at": {"gte": _iso(since)}}}
        res = await self.store.call(self.store.os.reindex(
            body={"source": source, "dest": {"index": dest, "version_type": "external"}, "conflicts": "proceed"},
            wait_for_completion=True, refresh=True, request_timeout=600))
        failures = res.get("failures") or []
        real = [f for f in failures if f.get("status") != 409]
        if real:
            raise StoreUnavailable(f"reindex {src} -> {dest} had {len(real)} failures", store="opensearch")
        written = int(res.get("created", 0)) + int(res.get("updated", 0))
        return {"total": int(res.get("total", 0)), "written": written,
                "accounted": written + int(res.get("version_conflicts", 0))}
