"""Audit trail: append through `audit_append` (hash-chained in the database), verify the chain, search."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stores.postgres.base import Params, Repository, cap_limit, scope_clause
from stores.postgres.errors import pg_errors
from stores.postgres.models import AuditEntry, AuditRecord, ChainReport, Decision
from stores.scope import RowScope

GENESIS = "0" * 64
_CANONICAL = ("audit_canonical(id, occurred_at, actor_subject, actor_role, actor_user_id, action, resource, "
              "args_digest, decision, reason, rows_returned, redactions, latency_ms, request_id, metadata)")
_RECORD_COLUMNS = ("id, occurred_at, actor_subject, actor_role, actor_user_id, action, resource, args_digest, "
                   "decision, reason, rows_returned, redactions::text, latency_ms, request_id, metadata::text, hash")


def link_hash(prev_hash: str, canonical: str) -> str:
    """The chain link: sha256 over the previous hash and the row's canonical text (as the database does)."""
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def _batch_row(e: AuditEntry) -> dict[str, object]:
    """One element of `audit_append_batch`'s array (the jsonb values as objects, not as text)."""
    row = e.model_dump(mode="json")
    row["metadata"] = json.loads(json.dumps(e.metadata, sort_keys=True, default=str))
    return row


@dataclass(frozen=True)
class Segment:
    """A run of consecutive chain links (in id order) that lies in one archived partition."""

    first_id: int
    last_id: int
    prev_hash: str
    hash: str
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {"first_id": self.first_id, "last_id": self.last_id, "prev_hash": self.prev_hash, "hash": self.hash,
                "rows": self.rows}


def bridges(segments: Sequence[Segment], from_hash: str, to_hash: str, after_id: int | None,
            before_id: int | None) -> int | None:
    """How many archived rows link `from_hash` to `to_hash` through segments whose ids lie strictly between
    `after_id` and `before_id`; None when no chain of segments does."""
    by_prev = {s.prev_hash: s for s in segments}
    h, rows, seen = from_hash, 0, 0
    while h != to_hash:
        s = by_prev.get(h)
        if s is None or seen > len(segments):
            return None
        if (after_id is not None and s.first_id <= after_id) or (before_id is not None and s.last_id >= before_id):
            return None
        h, rows, seen = s.hash, rows + s.rows, seen + 1
    return rows


class AuditRepository(Repository):
    """Works with the service role, or the log role for `append` only (it may only EXECUTE audit_append)."""

    def __init__(self, store, *, replica_reads: bool = False) -> None:
        # Compliance reads want the latest rows: the primary by default.
        super().__init__(store, replica_reads=replica_reads)

    async def append(self, entry: AuditEntry) -> int:
        """Append one row; returns its id. One round trip, its own transaction."""
        with pg_errors():
            async with self.store.connection() as conn:
                return await conn.fetchval(
                    "SELECT audit_append(p_actor_subject => $1, p_actor_role => $2, p_action => $3, "
                    "p_decision => $4, p_actor_user_id => $5, p_resource => $6, p_args_digest => $7, "
                    "p_reason => $8, p_rows_returned => $9, p_redactions => $10::jsonb, p_latency_ms => $11, "
                    "p_request_id => $12, p_metadata => $13::jsonb, p_occurred_at => $14)",
                    entry.actor_subject, entry.actor_role, entry.action, entry.decision, entry.actor_user_id,
                    entry.resource, entry.args_digest, entry.reason, entry.rows_returned,
                    json.dumps(entry.redactions, sort_keys=True), entry.latency_ms, entry.request_id,
                    json.dumps(entry.metadata, sort_keys=True, default=str), entry.occurred_at)

    async def append_many(self, entries: list[AuditEntry], *, timeout: float | None = None) -> list[int]:
        """Append rows in the order given, in one transaction (`audit_append_batch`: one chain lock hold, one
        commit); their ids in the same order. All or none: a failure appends nothing."""
        rows = [_batch_row(e) for e in entries]
        with pg_errors():
            async with self.store.connection() as conn:
                records = await conn.fetch("SELECT audit_append_batch($1::jsonb) AS id", json.dumps(rows),
                                           timeout=timeout)
        return [r["id"] for r in records]

    async def verify_chain(self, *, batch: int = 5000, archived: Sequence[Segment] | None = None) -> ChainReport:
        """Walk the whole chain in id order on one snapshot, recomputing every hash here in Python.

        Finds a changed row (its hash no longer matches), a removed row (the next row's prev_hash points
        elsewhere) and rows removed from the end (the chain head remembers the last link). A gap is accepted
        only where `archived` segments (partitions archived, then dropped: `stores.postgres.audit_archive`)
        link both sides exactly.
        """
        checked = 0
        expected_prev = GENESIS
        last_id: int | None = None
        segments = list(archived or ())
        with pg_errors():
            async with self.store.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_chain_head")
                cursor = conn.cursor(f"SELECT id, prev_hash, hash, {_CANONICAL} AS canonical FROM audit_logs "
                                     "ORDER BY id", prefetch=batch)
                async for row in cursor:
                    checked += 1
                    if row["prev_hash"] != expected_prev and segments and bridges(
                            segments, expected_prev, row["prev_hash"], last_id, row["id"]) is not None:
                        expected_prev = row["prev_hash"]  # the archived rows in between link the two sides
                    if row["prev_hash"] != expected_prev:
                        return ChainReport(ok=False, rows_checked=checked, first_bad_id=row["id"],
                                           reason="prev_hash does not match the previous row (a row was removed "
                                                  "or reordered)", last_id=last_id)
                    if link_hash(row["prev_hash"], row["canonical"]) != row["hash"]:
                        return ChainReport(ok=False, rows_checked=checked, first_bad_id=row["id"],
                                           reason="hash does not match the row's content (the row was changed)",
                                           last_id=last_id)
                    expected_prev = row["hash"]
                    last_id = row["id"]
        if segments and head is not None and head["last_hash"] != expected_prev and bridges(
                segments, expected_prev, head["last_hash"], last_id, None) is not None:
            expected_prev, last_id = head["last_hash"], head["last_id"]  # the newest rows are archived
        if head is not None and (head["last_hash"] != expected_prev or (head["last_id"] or None) != last_id):
            return ChainReport(ok=False, rows_checked=checked, first_bad_id=last_id,
                               reason="the chain ends before its recorded head (rows removed from the end)",
                               last_id=last_id)
        return ChainReport(ok=True, rows_checked=checked, last_id=last_id)

    async def call_sessions(self, date_from: datetime, date_to: datetime, *, pids: Sequence[int] = (),
                            request_id: str | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
        """(request id, the PostgreSQL sessions it used) of the calls audited in [date_from, date_to] that recorded
        any (`metadata.pg_sessions`, see `stores.postgres.pool.call_sessions`): those that used one of `pids`,
        or the one call `request_id`. What `kredete ops slow-queries --log` attributes log lines with."""
        p = Params()
        where = [f"occurred_at >= {p.add(date_from)}", f"occurred_at <= {p.add(date_to)}",
                 "request_id IS NOT NULL", "metadata ? 'pg_sessions'"]
        if request_id is not None:
            where.append(f"request_id = {p.add(request_id)}")
        if pids:
            where.append("EXISTS (SELECT 1 FROM jsonb_array_elements(metadata->'pg_sessions') s "
                         f"WHERE (s->>'pid')::int = ANY({p.add(list(pids))}::int[]))")
        query = (f"SELECT request_id, (metadata->'pg_sessions')::text AS sessions FROM audit_logs "
                 f"WHERE {' AND '.join(where)} ORDER BY occurred_at, id LIMIT 10000")
        async with self._read() as conn:
            rows = await conn.fetch(query, *p.values)
        return [(r["request_id"], json.loads(r["sessions"])) for r in rows]

    async def search(self, scope: RowScope, *, date_from: datetime | None = None, date_to: datetime | None = None,
                     actor_subject: str | None = None, decision: Decision | None = None, action: str | None = None,
                     limit: int = 50) -> list[AuditRecord]:
        """Newest first. The scope applies to the user the action was for (`actor_user_id`)."""
        p = Params()
        where = [scope_clause(scope, "actor_user_id", p)]
        if date_from is not None:
            where.append(f"occurred_at >= {p.add(date_from)}")
        if date_to is not None:
            where.append(f"occurred_at < {p.add(date_to)}")
        if actor_subject is not None:
            where.append(f"actor_subject = {p.add(actor_subject)}")
        if decision is not None:
            where.append(f"decision = {p.add(decision)}")
        if action is not None:
            where.append(f"action = {p.add(action)}")
        query = (f"SELECT {_RECORD_COLUMNS} FROM audit_logs WHERE {' AND '.join(where)} "
                 f"ORDER BY occurred_at DESC, id DESC LIMIT {p.add(cap_limit(limit))}")
        async with self._read() as conn:
            rows = await conn.fetch(query, *p.values)
        out = []
        for r in rows:
            data = dict(r)
            data["redactions"] = json.loads(data["redactions"])
            data["metadata"] = json.loads(data["metadata"])
            out.append(AuditRecord.model_validate(data))
        return out
