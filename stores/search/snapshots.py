"""Snapshots of the search indexes into an S3 repository (OpenSearch's `repository-s3` plugin).

The repository lives in the backups bucket under `opensearch/<cluster name>/`: one cluster writes one base
path (two clusters writing the same one would corrupt it). Snapshots are incremental at the segment level, so
a snapshot after a small change is small. A restore never overwrites an index silently: it either renames
what it restores (a copy beside the live indexes) or is told to replace the indexes it brings back.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from stores.errors import InvalidData, NotFound
from stores.search.client import SearchStore

REPOSITORY = "kredete-backups"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,200}$")
_GENERATION = re.compile(r"^(.+)-\d{6}$")


class SnapshotInfo(BaseModel):
    name: str
    state: str
    indices: list[str]
    started: datetime | None = None
    seconds: float = 0.0
    shards_failed: int = 0


class RestoreReport(BaseModel):
    snapshot: str
    indices: list[str]
    seconds: float
    documents: int


def _info(raw: dict[str, Any]) -> SnapshotInfo:
    start = raw.get("start_time_in_millis")
    return SnapshotInfo(name=raw["snapshot"], state=raw.get("state", "?"), indices=sorted(raw.get("indices", [])),
                        started=datetime.fromtimestamp(start / 1000, UTC) if start else None,
                        seconds=round(raw.get("duration_in_millis", 0) / 1000, 3),
                        shards_failed=int((raw.get("shards") or {}).get("failed", 0)))


class SnapshotRepository:
    """The S3 snapshot repository of one cluster, for the indexes of one store's prefix."""

    def __init__(self, store: SearchStore, bucket: str, *, base_path: str | None = None,
                 name: str = REPOSITORY) -> None:
        self.store = store
        self.bucket = bucket
        self.base_path = base_path
        self.name = name

    async def ensure(self, *, readonly: bool = False) -> str:
        """Register (or update) the repository and let every node verify it can write there; returns its path."""
        base = self.base_path
        if base is None:
            health = await self.store.cluster_health()
            base = f"opensearch/{health.cluster_name}"
        # The async client on netty: it verifies TLS with the JVM's trust store (the node gets the local stack's
        # CA there); the default CRT client has its own TLS stack and trusts only the system's CAs.
        settings: dict[str, Any] = {"bucket": self.bucket, "base_path": base, "client": "default",
                                    "readonly": readonly, "s3_async_client_type": "netty"}
        await self.store.call(self.store.os.snapshot.create_repository(
            repository=self.name, body={"type": "s3", "settings": settings}, params={"verify": "true"},
            request_timeout=120))  # every node writes and reads a test blob
        return f"s3://{self.bucket}/{base}"

    async def create(self, name: str | None = None, *, indices: str | None = None) -> SnapshotInfo:
        """Snapshot the store's indexes (`<prefix>-*`, with their aliases) and wait until it is done."""
        name = name or f"{self.store.prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        if not _NAME.match(name):
            raise InvalidData(f"snapshot name {name!r}: lower-case letters, digits, . _ - only", store="opensearch")
        body = {"indices": indices or f"{self.store.prefix}-*", "include_global_state": False,
                "ignore_unavailable": True}
        res = await self.store.call(self.store.os.snapshot.create(
            repository=self.name, snapshot=name, body=body, wait_for_completion=True, request_timeout=3600))
        info = _info(res["snapshot"])
        if info.state != "SUCCESS":
            raise InvalidData(f"snapshot {name} ended {info.state} ({info.shards_failed} shards failed)",
                              store="opensearch")
        return info

    async def list(self) -> list[SnapshotInfo]:
        res = await self.store.call(self.store.os.snapshot.get(repository=self.name, snapshot="_all"))
        return sorted((_info(s) for s in res.get("snapshots", [])), key=lambda s: s.started or datetime.min)

    async def get(self, name: str) -> SnapshotInfo:
        try:
            res = await self.store.call(self.store.os.snapshot.get(repository=self.name, snapshot=name))
        except NotFound as exc:
            raise NotFound(f"no snapshot {name!r} in repository {self.name}", store="opensearch") from exc
        snaps = res.get("snapshots") or []
        if not snaps:
            raise NotFound(f"no snapshot {name!r} in repository {self.name}", store="opensearch")
        return _info(snaps[0])

    async def delete(self, name: str) -> None:
        await self.store.call(self.store.os.snapshot.delete(repository=self.name, snapshot=name))

    async def restore(self, name: str, *, replace: bool = False, rename_prefix: str | None = None,
                      indices: list[str] | None = None) -> RestoreReport:
        """Restore a snapshot's indexes and wait until every restored shard is active (yellow or better).

        `rename_prefix` restores beside the live indexes (`<rename_prefix><name>`, no aliases). Otherwise
        the indexes come back under their own names with their aliases: refused while one of them exists,
        unless `replace` (then the live ones, and any index the aliases point at, are deleted first).
        """
        t0 = time.monotonic()
        snap = await self.get(name)
        wanted = indices or snap.indices
        unknown = sorted(set(wanted) - set(snap.indices))
        if unknown:
            raise InvalidData(f"snapshot {name} holds no index {unknown}; it holds {snap.indices}", store="opensearch")
        # Restored indexes take this cluster's replica count, not the one they were snapshotted with.
        body: dict[str, Any] = {"indices": ",".join(wanted), "include_global_state": False,
                                "index_settings": {"index.number_of_replicas": self.store.replica_count()}}
        targets = list(wanted)
        if rename_prefix:
            body.update(rename_pattern="(.+)", rename_replacement=f"{rename_prefix}$1", include_aliases=False)
            targets = [f"{rename_prefix}{i}" for i in wanted]
        conflicts = await self._existing(targets)
        if not rename_prefix:
            conflicts = sorted(set(conflicts) | await self._alias_holders(wanted))
        if conflicts and not replace:
            raise InvalidData(f"restoring {name} would overwrite {conflicts} (the indexes, or the indexes now behind "
                              "their aliases); pass replace (delete them first) or restore under another prefix",
                              store="opensearch")
        if conflicts:
            await self.store.call(self.store.os.indices.delete(index=",".join(conflicts)))
        await self.store.call(self.store.os.snapshot.restore(
            repository=self.name, snapshot=name, body=body, wait_for_completion=True, request_timeout=3600))
        await self.store.cluster_health(",".join(targets), wait_for="yellow", timeout_s=600)
        count = await self.store.call(self.store.os.count(index=",".join(targets)))
        return RestoreReport(snapshot=name, indices=targets, seconds=round(time.monotonic() - t0, 3),
                             documents=int(count["count"]))

    async def _existing(self, names: list[str]) -> list[str]:
        res = await self.store.call(self.store.os.indices.get(index=",".join(names), ignore_unavailable=True,
                                                              allow_no_indices=True))
        return sorted(res)

    async def _alias_holders(self, indices: list[str]) -> set[str]:
        """Indexes behind the aliases the restored indexes bring back (`<alias>-<generation>` -> `<alias>`):
        a newer generation built since the snapshot would leave an alias on two write indexes."""
        holders: set[str] = set()
        for alias in sorted({m.group(1) for i in indices if (m := _GENERATION.match(i))}):
            try:
                holders |= set(await self.store.call(self.store.os.indices.get_alias(name=alias)))
            except NotFound:
                continue
        return holders
