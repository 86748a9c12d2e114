"""Search indexes beside the knowledge index: transactions, users, audit logs, credit reports, disputes.

Rows become documents through small pure functions (free text redacted; only the mapped columns are
read, never an encrypted PII column). Feeds: Postgres tables by a high-water mark (`updated_at`,
re-read `lag` behind it for rows committed late, or `id` for the append-only audit log) checkpointed
in the ingest-state index; Mongo documents by full scan (`kredete search sync`) or from the credit
store's change events (`retrieval.changes`, the `kredete ingest --follow` follower). Writes carry the
source's version, so re-reads are idempotent and an alias-swap `rebuild()` loses nothing.
Analytics aggregations (volume by corridor, day and currency; dispute outcomes) run on these indexes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from retrieval.converters import credit_report_doc
from retrieval.documents import MalformedDocument
from retrieval.errors import IndexNotBuilt, InvalidQuery, ScopeRefused
from retrieval.ingest import Redactor, default_redactor
from retrieval.search import IndexProfile, Searcher
from stores.errors import NotFound
from stores.postgres.models import counterparty_type
from stores.scope import COMPLIANCE_ROLE, AuditScope, RowScope
from stores.search.catalog import (
    AUDIT_LOGS,
    CREDIT_REPORTS,
    DISPUTES,
    INGEST_STATE,
    TRANSACTIONS,
    USERS,
    static_specs,
)
from stores.search.client import SearchStore
from stores.search.indexes import IndexManager, IndexSpec, RebuildReport, stale_write, version_of, write_action
from stores.search.knn import scope_filter
from stores.search.mappings import filterable_fields

Row = dict[str, Any]


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def transaction_doc(row: Row, redact: Redactor) -> Row:
    name = row.get("counterparty_name")
    person = bool(name) and counterparty_type(str(row["kind"])) == "person"
    # A natural person's name is masked whole, and wherever it recurs in the description ("Send to Peter").
    counterparty = "[PERSON]" if person else (redact(name) if name else None)
    description = redact(row["description"], [name] if person else ()) if row.get("description") else None
    return {"transaction_id": str(row["id"]), "user_id": str(row["user_id"]), "kind": str(row["kind"]),
            "status": str(row["status"]), "corridor": row.get("corridor_id"), "currency": row["currency"],
            "amount_minor": int(row["amount_minor"]), "fee_minor": int(row.get("fee_minor") or 0),
            "dest_currency": row.get("dest_currency"), "dest_amount_minor": row.get("dest_amount_minor"),
            "fx_rate": float(row["fx_rate"]) if row.get("fx_rate") is not None else None,
            "reference": row["reference"],
            "counterparty": counterparty, "description": description,
            "failure_reason": row.get("failure_reason"), "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]), "completed_at": _iso(row.get("completed_at"))}


def user_doc(row: Row, redact: Redactor) -> Row:
    return {"user_id": str(row["id"]), "status": str(row["status"]), "country": row["country"],
            "home_currency": row["home_currency"], "kyc_level": str(row["kyc_level"]),
            "deleted": row.get("deleted_at") is not None, "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"])}


def audit_doc(row: Row, redact: Redactor) -> Row:
    red = row.get("redactions") or {}
    if isinstance(red, str):
        import json

        red = json.loads(red)
    return {"audit_id": str(row["id"]), "occurred_at": _iso(row["occurred_at"]),
            "actor_subject": row["actor_subject"], "actor_role": row["actor_role"],
            "user_id": str(row["actor_user_id"]) if row.get("actor_user_id") else None, "action": row["action"],
            "resource": row.get("resource"), "args_digest": row.get("args_digest"), "decision": row["decision"],
            "reason": redact(row["reason"]) if row.get("reason") else None,
            "rows_returned": int(row.get("rows_returned") or 0),
            "redaction_count": int(sum(int(v) for v in red.values() if isinstance(v, int | float))),
            "redactions": {str(k): int(v) for k, v in red.items() if isinstance(v, int | float)},
            "latency_ms": int(row.get("latency_ms") or 0), "request_id": row.get("request_id")}


def credit_report_index_doc(raw: Row, redact: Redactor) -> Row:
    doc = credit_report_doc(raw)
    accounts = raw.get("accounts") or []
    negative = sum(1 for a in accounts if a.get("status") in ("delinquent", "charged_off", "collections"))
    negative += sum(1 for i in raw.get("items") or [] if i.get("kind") in ("late_payment", "collection",
                                                                          "public_record"))
    return {"report_id": doc.source_id, "user_id": doc.user_id, "bureau": doc.metadata["bureau"],
            "country": doc.metadata["country"], "score": raw.get("score"), "version": doc.version,
            "pulled_at": _iso(raw.get("pulled_at")), "text": redact(doc.text, doc.known_names),
            "account_count": len(accounts), "negative_items": negative}


def dispute_index_doc(raw: Row, redact: Redactor) -> Row:
    from stores.mongo.documents import Dispute

    try:
        d = Dispute.model_validate(raw)
    except ValueError as exc:
        raise MalformedDocument(str(raw.get("_id", "?")), "failed validation") from exc
    end = d.resolved_at or datetime.now(UTC)
    outcome = d.bureau_responses[-1].outcome if d.bureau_responses else "pending"
    return {"case_id": d.id, "user_id": d.user_id, "bureau": str(d.bureau), "reason": d.reason,
            "status": str(d.status), "outcome": outcome, "opened_at": _iso(d.opened_at),
            "resolved_at": _iso(d.resolved_at), "days_open": max(0, (end - d.opened_at).days),
            "text": redact(d.notes) if d.notes else None}


def _version_at(field: str) -> Callable[[Row], int]:
    return lambda row: version_of(row.get(field))


@dataclass(frozen=True)
class Feed:
    """Where an index's documents come from."""

    kind: str  # "postgres" | "mongo"
    source: str  # table, view or collection
    cursor: str  # high-water-mark column (postgres) / "_id" (mongo)
    to_doc: Callable[[Row, Redactor], Row]
    id_field: str
    #: The columns read (postgres): exactly what `to_doc` maps, never an encrypted PII column.
    columns: tuple[str, ...] = ()
    #: The document's external version: the source's own change time, so a copy made during a rebuild
    #: never overwrites a newer write and a re-read row rewrites itself idempotently.
    version: Callable[[Row], int] = field(default=_version_at("updated_at"))


TX_COLUMNS = ("id", "user_id", "kind", "status", "corridor_id", "currency", "amount_minor", "fee_minor",
              "dest_currency", "dest_amount_minor", "fx_rate", "reference", "counterparty_name", "description",
              "failure_reason", "created_at", "updated_at", "completed_at")
USER_COLUMNS = ("id", "status", "country", "home_currency", "kyc_level", "deleted_at", "created_at", "updated_at")
AUDIT_COLUMNS = ("id", "occurred_at", "actor_subject", "actor_role", "actor_user_id", "action", "resource",
                 "args_digest", "decision", "reason", "rows_returned", "redactions", "latency_ms", "request_id")

FEEDS: dict[str, Feed] = {
    TRANSACTIONS: Feed("postgres", "transactions", "updated_at", transaction_doc, "transaction_id", TX_COLUMNS),
    # The view without any encrypted column (the agent role can read it; `users` it cannot).
    USERS: Feed("postgres", "users_public", "updated_at", user_doc, "user_id", USER_COLUMNS),
    # Append-only, ids drawn under audit_append's lock: they commit in id order, an id cursor skips nothing.
    AUDIT_LOGS: Feed("postgres", "audit_logs", "id", audit_doc, "audit_id", AUDIT_COLUMNS, _version_at("occurred_at")),
    CREDIT_REPORTS: Feed("mongo", "credit_reports", "_id", credit_report_index_doc, "report_id",
                         version=_version_at("created_at")),
    DISPUTES: Feed("mongo", "dispute_cases", "_id", dispute_index_doc, "case_id"),
}
SEARCHABLE = tuple(FEEDS)
DEFAULT_LAG = timedelta(minutes=5)
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


class DocIndexer:
    """Writes one index family from rows; malformed rows are counted and skipped.

    Postgres feeds resume from an `(updated_at, id)` high-water mark, but re-read `lag` behind it on
    every sync: a row committed late with an earlier `updated_at` (a long transaction) is still picked
    up, and rows re-read are rewritten idempotently (same id, same version).
    """

    def __init__(self, search: SearchStore, name: str, *, redactor: Redactor | None = None,
                 lag: timedelta | float = DEFAULT_LAG) -> None:
        if name not in FEEDS:
            raise InvalidQuery(f"unknown index {name!r}; known: {list(FEEDS)}")
        self.search = search
        self.name = name
        self.feed = FEEDS[name]
        self.spec: IndexSpec = static_specs()[name]
        self.redact = redactor or default_redactor()
        self.manager = IndexManager(search)
        self.alias = search.index_name(name)
        self.lag = lag if isinstance(lag, timedelta) else timedelta(seconds=float(lag))

    async def ensure(self) -> None:
        await self.manager.ensure(self.spec)
        await self.manager.ensure(static_specs()[INGEST_STATE])

    async def index_rows(self, rows: Iterable[Row], *, index: str | None = None,
                         read_at: datetime | None = None) -> tuple[int, list[str]]:
        """Bulk-index rows into `index` (default: the alias), `indexed_at` = when they were read.
        Returns (indexed, skip reasons); a row the index already holds newer is not a skip."""
        stamp = (read_at or datetime.now(UTC)).isoformat()
        lines: list[Row] = []
        skipped: list[str] = []
        for row in rows:
            try:
                doc = self.feed.to_doc(row, self.redact)
                version = self.feed.version(row)
            except (KeyError, TypeError, ValueError) as exc:
                rid = str(row.get("id", row.get("_id", "?")))
                skipped.append(f"{rid}: {exc.reason if isinstance(exc, MalformedDocument) else repr(exc)}"[:300])
                continue
            doc = {k: v for k, v in doc.items() if v is not None}
            doc["indexed_at"] = stamp
            lines += [write_action(index or self.alias, doc[self.feed.id_field], version), doc]
        if not lines:
            return 0, skipped
        res = await self.search.call(self.search.os.bulk(body=lines, request_timeout=120))
        bad = [i["index"] for i in res["items"] if i["index"].get("error") and not stale_write(i["index"])]
        skipped += [f"{b['_id']}: {b['error'].get('type')}" for b in bad]
        return len(lines) // 2 - len(bad), skipped

    async def delete_ids(self, ids: Iterable[str]) -> int:
        """Remove documents by id (through the alias, tombstoned for a rebuild running meanwhile)."""
        ids = sorted({str(i) for i in ids})
        if not ids:
            return 0
        return await self.manager.delete_where(self.spec, {"ids": {"values": ids}}, refresh=True)

    async def apply_changes(self, rows: list[Row], gone: Iterable[str] = ()) -> tuple[int, list[str], int]:
        """Index changed source documents and remove vanished ones (a new credit-report version also
        removes the version it supersedes). Returns (indexed, skip reasons, deleted)."""
        gone = {str(g) for g in gone}
        if self.name == CREDIT_REPORTS:
            gone |= {str(r["supersedes"]) for r in rows if r.get("supersedes")}
        n, skipped = await self.index_rows(rows) if rows else (0, [])
        return n, skipped, await self.delete_ids(gone)

    # --- feeds ----------------------------------------------------------------------------------
    async def _pg_rows(self, pg: Any, after: str | None, batch: int) -> AsyncIterator[tuple[datetime, list[Row]]]:
        """Keyset pages `(updated_at, id) > cursor` (or `id > cursor` for the append-only audit log),
        each with the time it was read."""
        cols = ", ".join(self.feed.columns)
        table = self.feed.source
        if self.feed.cursor == "id":
            sql = (f"SELECT {cols} FROM {table} WHERE ($1::bigint IS NULL OR id > $1::bigint) "
                   f"ORDER BY id LIMIT {batch:d}")
        else:
            sql = (f"SELECT {cols} FROM {table} WHERE ($1::timestamptz IS NULL OR (updated_at, id) > "
                   f"($1::timestamptz, $2::uuid)) ORDER BY updated_at, id LIMIT {batch:d}")
        while True:
            args = _decode_cursor(after, self.feed.cursor)
            read_at = datetime.now(UTC)
            async with pg.connection(replica=True) as conn:
                rows = [dict(r) for r in await conn.fetch(sql, *args)]
            if not rows:
                return
            yield read_at, rows
            after = _encode_cursor(rows[-1], self.feed.cursor)
            if len(rows) < batch:
                return

    async def _mongo_rows(self, db: Any, batch: int) -> AsyncIterator[tuple[datetime, list[Row]]]:
        coll = db[self.feed.source]
        flt: Row = {}
        if self.name == CREDIT_REPORTS:
            superseded = [i for i in await coll.distinct("supersedes") if i]
            flt = {"_id": {"$nin": superseded}} if superseded else {}
        last = None
        while True:
            page = {**flt, "_id": {**flt.get("_id", {}), "$gt": last}} if last is not None else flt
            read_at = datetime.now(UTC)
            rows = await coll.find(page).sort("_id", 1).limit(batch).to_list(batch)
            if not rows:
                return
            yield read_at, rows
            last = rows[-1]["_id"]

    def _resume_from(self, high: str | None) -> str | None:
        """Where a Postgres sync starts reading: `lag` before the high-water mark (updated_at feeds)."""
        if high is None or self.feed.cursor == "id" or not self.lag:
            return high
        ts, _, _ = high.partition("|")
        return f"{(datetime.fromisoformat(ts) - self.lag).isoformat()}|{_NIL_UUID}"

    async def sync(self, *, postgres: Any = None, mongo_db: Any = None, full: bool = False,
                   index: str | None = None, batch: int = 1000) -> dict[str, Any]:
        """Index rows changed since the last checkpoint (all rows with `full`)."""
        await self.ensure()
        ckpt_id = f"checkpoint:index-{self.name}"
        high = None if full else await self._checkpoint(ckpt_id)
        total, skipped = 0, []
        if self.feed.kind == "postgres":
            if postgres is None:
                raise InvalidQuery(f"{self.name} is fed from Postgres; connect it")
            pages = self._pg_rows(postgres, self._resume_from(high), batch)
        else:
            if mongo_db is None:
                raise InvalidQuery(f"{self.name} is fed from Mongo; connect it")
            pages = self._mongo_rows(mongo_db, batch)
        async for read_at, rows in pages:
            n, s = await self.index_rows(rows, index=index, read_at=read_at)
            total, skipped = total + n, skipped + s
            if self.feed.kind == "postgres":
                last = _encode_cursor(rows[-1], self.feed.cursor)
                if high is None or _cursor_key(last, self.feed.cursor) > _cursor_key(high, self.feed.cursor):
                    high = last
                if index is None:
                    await self._save_checkpoint(ckpt_id, high)
        if index is None:
            await self.manager.prune_tombstones(self.spec)
        return {"index": self.name, "indexed": total, "skipped": len(skipped), "skip_reasons": skipped[:20],
                "checkpoint": high}

    async def rebuild(self, *, postgres: Any = None, mongo_db: Any = None) -> RebuildReport:
        """Reload the whole index from its source into a new generation, then swap the alias."""
        async def fill(index: str) -> None:
            await self.sync(postgres=postgres, mongo_db=mongo_db, full=True, index=index)

        return await self.manager.rebuild(self.spec, fill)

    async def _checkpoint(self, doc_id: str) -> Any:
        try:
            res = await self.search.call(self.search.os.get(index=self.search.index_name(INGEST_STATE), id=doc_id))
        except NotFound:
            return None
        return res["_source"].get("last_key")

    async def _save_checkpoint(self, doc_id: str, value: Any) -> None:
        body = {"kind": "checkpoint", "source": f"index-{self.name}", "last_key": str(value), "done": True,
                "at": datetime.now(UTC).isoformat()}
        await self.search.call(self.search.os.index(index=self.search.index_name(INGEST_STATE), id=doc_id,
                                                    body=body))


def _encode_cursor(row: Row, cursor: str) -> str:
    return str(row["id"]) if cursor == "id" else f"{_iso(row[cursor])}|{row['id']}"


def _decode_cursor(value: str | None, cursor: str) -> tuple[Any, ...]:
    if cursor == "id":
        return (None if value is None else int(value),)
    if value is None:
        return (None, None)
    ts, _, rid = value.partition("|")
    return (datetime.fromisoformat(ts), rid)


def _cursor_key(value: str, cursor: str) -> tuple[Any, ...]:
    return _decode_cursor(value, cursor)


# --- search and analytics ------------------------------------------------------------------------
def searcher_for(search: SearchStore, name: str) -> Searcher:
    spec = static_specs()[name]
    text = {TRANSACTIONS: ("description", "counterparty", "failure_reason"),
            AUDIT_LOGS: ("reason", "action", "resource", "actor_subject"),
            CREDIT_REPORTS: ("text",), DISPUTES: ("text",), USERS: ()}[name]
    highlight = tuple(f for f in text if spec.body["mappings"]["properties"][f].get("type") == "text")
    return Searcher(search, IndexProfile(name=name, filterable=filterable_fields(spec.body), text_fields=text,
                                         highlight_fields=highlight, source_excludes=()))


async def search_index(search: SearchStore, name: str, scope: RowScope | AuditScope, *, text: str | None = None,
                       filters: dict[str, Any] | None = None, k: int = 20,
                       sort: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Scoped structured search over one index (BM25 on its text fields when `text` is given).

    The audit-log index takes only an AuditScope; every other index a RowScope (inside the query).
    """
    if not 1 <= k <= 100:
        raise InvalidQuery("k must be from 1 to 100")
    if name == AUDIT_LOGS:
        if not isinstance(scope, AuditScope):
            raise ScopeRefused(f"audit logs are searchable only under a {COMPLIANCE_ROLE} scope")
        row_filter = None
    elif isinstance(scope, RowScope):
        row_filter = scope_filter(scope, public_field=None)
    else:
        raise ScopeRefused(f"{name} is searched with a RowScope built from the caller's token")
    s = searcher_for(search, name)
    flt = s.build_filter(row_filter, filters)
    if text:
        return [{**h.source, "_score": h.score, "_highlights": h.highlights} for h in await s.bm25(text, k, flt)]
    body: dict[str, Any] = {"query": {"bool": {"filter": [flt]}} if flt else {"match_all": {}}}
    if sort:
        body["sort"] = sort
    return [h["_source"] for h in await s._search(body, k)]


async def _aggregate(search: SearchStore, name: str, body: dict[str, Any]) -> dict[str, Any]:
    alias = search.index_name(name)
    try:
        return await search.call(search.os.search(index=alias, body=body))
    except NotFound as exc:
        raise IndexNotBuilt(alias, f"kredete search sync {name}") from exc


async def volume_by_corridor_per_day(search: SearchStore, date_from: datetime, date_to: datetime, *,
                                     statuses: tuple[str, ...] = ("completed",)) -> list[dict[str, Any]]:
    """Per day, corridor and source currency: transaction count and summed amount (minor units of that
    currency; amounts in different currencies are never added together)."""
    body = {"size": 0, "query": {"bool": {"filter": [
        {"range": {"created_at": {"gte": date_from.isoformat(), "lt": date_to.isoformat()}}},
        {"terms": {"status": list(statuses)}}, {"exists": {"field": "corridor"}}]}},
        "aggs": {"day": {"date_histogram": {"field": "created_at", "calendar_interval": "day"},
                         "aggs": {"corridor": {"terms": {"field": "corridor", "size": 100},
                                               "aggs": {"currency": {"terms": {"field": "currency", "size": 20},
                                                                     "aggs": {"amount": {"sum": {
                                                                         "field": "amount_minor"}}}}}}}}}}
    res = await _aggregate(search, TRANSACTIONS, body)
    out = []
    for day in res["aggregations"]["day"]["buckets"]:
        for c in day["corridor"]["buckets"]:
            for cur in c["currency"]["buckets"]:
                out.append({"day": day["key_as_string"][:10], "corridor": c["key"], "currency": cur["key"],
                            "count": cur["doc_count"], "amount_minor": int(cur["amount"]["value"])})
    return out


async def dispute_outcomes(search: SearchStore, *, bureau: str | None = None) -> dict[str, Any]:
    """Counts by outcome and status, and average days open per outcome."""
    flt = [{"term": {"bureau": bureau}}] if bureau else []
    body = {"size": 0, "query": {"bool": {"filter": flt}}, "aggs": {
        "outcome": {"terms": {"field": "outcome", "size": 20}, "aggs": {"days": {"avg": {"field": "days_open"}}}},
        "status": {"terms": {"field": "status", "size": 20}}}}
    res = await _aggregate(search, DISPUTES, body)
    aggs = res["aggregations"]
    return {"total": res["hits"]["total"]["value"],
            "by_outcome": {b["key"]: {"count": b["doc_count"], "avg_days_open": round(b["days"]["value"] or 0, 1)}
                           for b in aggs["outcome"]["buckets"]},
            "by_status": dict(Counter({b["key"]: b["doc_count"] for b in aggs["status"]["buckets"]}))}
