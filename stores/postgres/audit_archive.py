"""Monthly audit_logs partitions archived out of the database, with the chain still verifiable across them.

A partition is archived as its rows (every column, and each row's canonical text the hash covers) plus a manifest:
row count, first/last id, the file's sha256 and the partition's *segments*: the maximal runs of the chain (in id
order) that lie in it, each with the `prev_hash` of its first row and the `hash` of its last. The same segments
go into `audit_archive`. Once a partition is dropped, `AuditRepository.verify_chain` (`kredete db verify-audit`)
walks the live rows and accepts a gap only where archived segments link the two sides exactly (first prev_hash =
the last live hash before the gap, last hash = the next live row's prev_hash, ids in between): a partition
dropped without its archive, or an archive that does not fit, breaks the chain as any removed row would.
`verify_archived_rows` re-checks an archive file itself (every row's hash from its canonical text, the links
inside each segment, the segments against the manifest).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from stores.errors import Conflict, InvalidData
from stores.postgres.audit import _CANONICAL, Segment, link_hash
from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

_COLUMNS = ("id, occurred_at, actor_subject, actor_role, actor_user_id, action, resource, args_digest, decision, "
            "reason, rows_returned, redactions::text AS redactions, latency_ms, request_id, metadata::text AS metadata,"
            " prev_hash, hash")


@dataclass(frozen=True)
class Partition:
    name: str
    month: date
    rows: int
    archived: bool
    dropped: bool


def segments_of(ids_in_partition: set[int], ordered: Iterable[tuple[int, str, str]]) -> list[Segment]:
    """The partition's segments, from every row of the id range in chain order: (id, prev_hash, hash)."""
    out: list[Segment] = []
    cur: list[Any] | None = None
    for rid, prev, h in ordered:
        if rid in ids_in_partition:
            if cur is None:
                cur = [rid, rid, prev, h, 0]
            cur[1], cur[3], cur[4] = rid, h, cur[4] + 1
        elif cur is not None:
            out.append(Segment(*cur))
            cur = None
    if cur is not None:
        out.append(Segment(*cur))
    return out


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    lines = [json.dumps(r, default=str, sort_keys=True) for r in rows]
    return gzip.compress(("\n".join(lines) + ("\n" if lines else "")).encode(), mtime=0)


def verify_archived_rows(blob: bytes, manifest: dict[str, Any]) -> list[Segment]:
    """Check an archive file against its manifest and itself; returns its segments. InvalidData when a row's hash
    does not match its canonical text, a link inside a segment is broken, or the file or segments differ."""
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise InvalidData(f"audit archive {manifest.get('partition')}: file does not match its sha256",
                          store="postgres")
    rows = [json.loads(line) for line in gzip.decompress(blob).decode().splitlines() if line]
    if len(rows) != manifest["rows"]:
        raise InvalidData(f"audit archive {manifest.get('partition')}: {len(rows)} rows, manifest says "
                          f"{manifest['rows']}", store="postgres")
    by_id = {r["id"]: r for r in rows}
    segments = [Segment(**s) for s in manifest["segments"]]
    covered = 0
    for seg in segments:
        ids = sorted(i for i in by_id if seg.first_id <= i <= seg.last_id)
        expected = seg.prev_hash
        for i in ids:
            r = by_id[i]
            if r["prev_hash"] != expected or link_hash(r["prev_hash"], r["canonical"]) != r["hash"]:
                raise InvalidData(f"audit archive {manifest.get('partition')}: row {i} breaks the chain",
                                  store="postgres")
            expected = r["hash"]
        if expected != seg.hash or len(ids) != seg.rows:
            raise InvalidData(f"audit archive {manifest.get('partition')}: segment {seg.first_id}-{seg.last_id} does "
                              "not match its rows", store="postgres")
        covered += len(ids)
    if covered != len(rows):
        raise InvalidData(f"audit archive {manifest.get('partition')}: rows outside its segments", store="postgres")
    return segments


class AuditArchiveRepository(Repository):
    """Service role on the primary (DETACH/DROP need the table owner)."""

    def __init__(self, store, **_: Any) -> None:
        super().__init__(store, replica_reads=False)

    async def partitions(self) -> list[Partition]:
        """The audit_logs partitions (not the default one), oldest first, with their row counts and archive state."""
        async with self._read() as conn:
            rows = await conn.fetch("""
                SELECT c.relname AS name, a.archived_at IS NOT NULL AS archived, a.dropped_at IS NOT NULL AS dropped
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                LEFT JOIN audit_archive a ON a.partition = c.relname
                WHERE i.inhparent = 'audit_logs'::regclass AND c.relname <> 'audit_logs_default'
                ORDER BY c.relname""")
            out = []
            for r in rows:
                n = await conn.fetchval(f'SELECT count(*) FROM "{r["name"]}"')
                y, m = r["name"].rsplit("_y", 1)[1].split("_")
                out.append(Partition(r["name"], date(int(y), int(m), 1), n, r["archived"], r["dropped"]))
            dropped = await conn.fetch("SELECT partition, month, rows FROM audit_archive WHERE dropped_at IS NOT NULL "
                                       "ORDER BY month")
        return out + [Partition(r["partition"], r["month"], r["rows"], True, True) for r in dropped]

    async def export(self, partition: str) -> tuple[list[dict[str, Any]], list[Segment]]:
        """Every row of a partition (with its canonical text) and its chain segments, on one snapshot."""
        with pg_errors():
            async with self.store.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                rows = [dict(r) for r in await conn.fetch(
                    f'SELECT {_COLUMNS}, {_CANONICAL} AS canonical FROM "{partition}" ORDER BY id')]
                if not rows:
                    return [], []
                ids = {r["id"] for r in rows}
                lo, hi = min(ids), max(ids)
                ordered = [(r["id"], r["prev_hash"], r["hash"]) for r in await conn.fetch(
                    "SELECT id, prev_hash, hash FROM audit_logs WHERE id BETWEEN $1 AND $2 ORDER BY id", lo, hi)]
        for r in rows:
            for k in ("occurred_at",):
                r[k] = r[k].isoformat() if isinstance(r[k], datetime) else r[k]
        return rows, segments_of(ids, ordered)

    async def record(self, partition: str, month: date, rows: list[dict[str, Any]], segments: list[Segment], *,
                     object_key: str, version_id: str | None, sha256: str, size: int) -> None:
        with pg_errors():
            async with self.store.connection() as conn:
                await conn.execute(
                    "INSERT INTO audit_archive (partition, month, rows, first_id, last_id, segments, object_key, "
                    "version_id, sha256, bytes) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10) "
                    "ON CONFLICT (partition) DO UPDATE SET rows = EXCLUDED.rows, first_id = EXCLUDED.first_id, "
                    "last_id = EXCLUDED.last_id, segments = EXCLUDED.segments, object_key = EXCLUDED.object_key, "
                    "version_id = EXCLUDED.version_id, sha256 = EXCLUDED.sha256, bytes = EXCLUDED.bytes, "
                    "archived_at = now() WHERE audit_archive.dropped_at IS NULL",
                    partition, month, len(rows), rows[0]["id"] if rows else None, rows[-1]["id"] if rows else None,
                    json.dumps([s.as_dict() for s in segments]), object_key, version_id, sha256, size)

    async def drop(self, partition: str) -> None:
        """Detach and drop an archived partition, in one transaction, only if it still holds exactly what was
        archived (Conflict otherwise: archive it again)."""
        with pg_errors():
            async with self.store.transaction() as conn:
                arch = await conn.fetchrow("SELECT rows, last_id, dropped_at FROM audit_archive WHERE partition = $1",
                                           partition)
                if arch is None:
                    raise Conflict(f"{partition} is not archived; it cannot be dropped", store="postgres")
                if arch["dropped_at"] is not None:
                    return
                await conn.execute(f'ALTER TABLE audit_logs DETACH PARTITION "{partition}"')
                now = await conn.fetchrow(f'SELECT count(*) AS n, max(id) AS last FROM "{partition}"')
                if (now["n"], now["last"]) != (arch["rows"], arch["last_id"]):
                    raise Conflict(f"{partition} changed since it was archived ({now['n']} rows now, "
                                   f"{arch['rows']} archived); archive it again", store="postgres")
                await conn.execute(f'DROP TABLE "{partition}"')
                await conn.execute("UPDATE audit_archive SET dropped_at = now() WHERE partition = $1", partition)

    async def segments(self) -> list[Segment]:
        """The chain segments of every dropped partition (what verify_chain bridges with)."""
        async with self._read() as conn:
            rows = await conn.fetch("SELECT segments::text FROM audit_archive WHERE dropped_at IS NOT NULL")
        return [Segment(**s) for r in rows for s in json.loads(r["segments"])]

    async def archived(self) -> list[dict[str, Any]]:
        async with self._read() as conn:
            return [dict(r) for r in await conn.fetch(
                "SELECT partition, month, rows, object_key, version_id, sha256, segments::text AS segments, "
                "dropped_at FROM audit_archive ORDER BY month")]
