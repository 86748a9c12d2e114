"""OpenSearch statistics: cluster health, node and index stats, search slow-log thresholds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from stores.search.client import SearchStore

STATUS = {"green": 0, "yellow": 1, "red": 2}


class IndexStats(BaseModel):
    index: str
    health: str
    documents: int
    bytes: int
    primary_bytes: int
    query_total: int
    query_seconds: float
    #: index.search.slowlog.threshold.<phase>.<level> in seconds, only the ones set (-1 = explicitly off).
    slowlog_s: dict[str, float] = {}


class NodeStats(BaseModel):
    node: str
    heap_used_bytes: int
    heap_max_bytes: int
    #: The old-generation pool: what outlived young collections (cached fielddata, segments' structures, and
    #: garbage until a mixed or full collection). Its share of the heap is the node's memory pressure.
    heap_old_used_bytes: int = 0
    fs_total_bytes: int
    fs_available_bytes: int
    documents: int
    store_bytes: int
    query_total: int
    query_seconds: float
    index_total: int
    index_seconds: float


class ClusterStats(BaseModel):
    cluster: str
    status: str
    nodes: int
    data_nodes: int
    shards: dict[str, int]
    nodes_stats: list[NodeStats]
    indices: list[IndexStats]


def _duration_s(text: str) -> float:
    text = str(text).strip()
    if text in ("-1", ""):
        return -1.0
    for unit, factor in (("nanos", 1e-9), ("micros", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
                         ("d", 86400)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * factor
    return float(text) / 1000.0  # a bare number is milliseconds


def slowlog_thresholds(settings: dict[str, Any]) -> dict[str, float]:
    """`{"query.warn": 1.0, ...}` from an index's flat settings."""
    out: dict[str, float] = {}
    prefix = "index.search.slowlog.threshold."
    for key, value in settings.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = _duration_s(value)
    return out


class SearchStats:
    def __init__(self, store: SearchStore) -> None:
        self.store = store

    async def cluster(self, *, indices: bool = True) -> ClusterStats:
        os = self.store.os
        health = await self.store.call(os.cluster.health(level="indices" if indices else "cluster"))
        nodes = await self.store.call(os.nodes.stats(metric="jvm,fs,indices"))
        node_rows = []
        for n in nodes.get("nodes", {}).values():
            ind = n.get("indices", {})
            node_rows.append(NodeStats(
                node=n.get("name", "?"), heap_used_bytes=n["jvm"]["mem"]["heap_used_in_bytes"],
                heap_max_bytes=n["jvm"]["mem"]["heap_max_in_bytes"],
                heap_old_used_bytes=n["jvm"]["mem"].get("pools", {}).get("old", {}).get("used_in_bytes", 0),
                fs_total_bytes=n["fs"]["total"]["total_in_bytes"],
                fs_available_bytes=n["fs"]["total"]["available_in_bytes"],
                documents=ind.get("docs", {}).get("count", 0),
                store_bytes=ind.get("store", {}).get("size_in_bytes", 0),
                query_total=ind.get("search", {}).get("query_total", 0),
                query_seconds=ind.get("search", {}).get("query_time_in_millis", 0) / 1000.0,
                index_total=ind.get("indexing", {}).get("index_total", 0),
                index_seconds=ind.get("indexing", {}).get("index_time_in_millis", 0) / 1000.0))
        rows: list[IndexStats] = []
        if indices:
            stats = await self.store.call(os.indices.stats(metric="docs,store,search", expand_wildcards="open"))
            flat = await self.store.call(os.indices.get_settings(index="_all", name="index.search.slowlog.*",
                                                                 flat_settings=True, expand_wildcards="open"))
            per_health = health.get("indices", {})
            for name, st in sorted(stats.get("indices", {}).items()):
                if name.startswith("."):
                    continue  # system indices
                total, prim = st.get("total", {}), st.get("primaries", {})
                rows.append(IndexStats(
                    index=name, health=per_health.get(name, {}).get("status", "unknown"),
                    documents=prim.get("docs", {}).get("count", 0),
                    bytes=total.get("store", {}).get("size_in_bytes", 0),
                    primary_bytes=prim.get("store", {}).get("size_in_bytes", 0),
                    query_total=total.get("search", {}).get("query_total", 0),
                    query_seconds=total.get("search", {}).get("query_time_in_millis", 0) / 1000.0,
                    slowlog_s=slowlog_thresholds(flat.get(name, {}).get("settings", {}))))
        shards = {k: int(health.get(f"{k}_shards", 0)) for k in ("active", "relocating", "initializing", "unassigned")}
        return ClusterStats(cluster=health.get("cluster_name", "?"), status=health.get("status", "unknown"),
                            nodes=int(health.get("number_of_nodes", 0)),
                            data_nodes=int(health.get("number_of_data_nodes", 0)),
                            shards=shards, nodes_stats=node_rows, indices=rows)

    async def checkpoint(self, state_index: str, doc_id: str) -> dict[str, Any] | None:
        """A sync checkpoint document of the ingest-state index (None when absent)."""
        from stores.errors import NotFound

        try:
            res = await self.store.call(self.store.os.get(index=state_index, id=doc_id))
        except NotFound:
            return None
        return res.get("_source")

    async def concrete(self, names: list[str]) -> set[str]:
        """The concrete indices behind these index names or aliases (missing ones ignored)."""
        if not names:
            return set()
        found = await self.store.call(self.store.os.indices.get(
            index=",".join(names), ignore_unavailable=True, allow_no_indices=True, expand_wildcards="open"))
        return set(found)
