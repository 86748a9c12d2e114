"""Search indexes beside the knowledge index: transactions, users, audit logs, credit reports, disputes.

Rows become documents through small pure functions (free text redacted; no encrypted PII column is
ever read). Feeds: Postgres tables by a high-water mark (`updated_at`, or `id` for the append-only
audit log) checkpointed in the ingest-state index; Mongo documents by full scan or by the credit
store's change events. `rebuild()` reloads an index from its source behind an alias swap.
Analytics aggregations (volume by corridor per day, dispute outcomes) run on these indexes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from retrieval.converters import credit_report_doc
from retrieval.documents import MalformedDocument
from retrieval.errors import InvalidQuery
from retrieval.ingest import Redactor, default_redactor
from retrieval.search import IndexProfile, Searcher
from stores.errors import NotFound
from stores.scope import RowScope
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
from stores.search.indexes import IndexManager, IndexSpec, RebuildReport
from stores.search.knn import scope_filter
from stores.search.mappings import filterable_fields

Row = dict[str, Any]


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def transaction_doc(row: Row, redact: Redactor) -> Row:
    return {"transaction_id": str(row["id"]), "user_id": str(row["user_id"]), "kind": str(row["kind"]),
            "status": str(row["status"]), "corridor": row.get("corridor_id"), "currency": row["currency"],
            "amount_minor": int(row["amount_minor"]), "fee_minor": int(row.get("fee_minor") or 0),
            "dest_currency": row.get("dest_currency"), "dest_amount_minor": row.get("dest_amount_minor"),
            "fx_rate": float(row["fx_rate"]) if row.get("fx_rate") is not None else None,
            "reference": row["reference"],
            "counterparty": redact(row["counterparty_name"]) if row.get("counterparty_name") else None,
            "description": redact(row["description"]) if row.get("description") else None,
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


@dataclass(frozen=True)
class Feed:
    """Where an index's documents come from."""

    kind: str  # "postgres" | "mongo"
    source: str  # table or collection
    cursor: str  # high-water-mark column (postgres) / "_id" (mongo)
    to_doc: Callable[[Row, Redactor], Row]
    id_field: str


FEEDS: dict[str, Feed] = {
    TRANSACTIONS: Feed("postgres", "transactions", "updated_at", transaction_doc, "transaction_id"),
    USERS: Feed("postgres", "users", "updated_at", user_doc, "user_id"),
    AUDIT_LOGS: Feed("postgres", "audit_logs", "id", audit_doc, "audit_id"),
    CREDIT_REPORTS: Feed("mongo", "credit_reports", "_id", credit_report_index_doc, "report_id"),
    DISPUTES: Feed("mongo", "dispute_cases", "_id", dispute_index_doc, "case_id"),
}
SEARCHABLE = tuple(FEEDS)


class DocIndexer:
    """Writes one index family from rows; malformed rows are counted and skipped."""

    def __init__(self, search: SearchStore, name: str, *, redactor: Redactor | None = None) -> None:
        if name not in FEEDS:
            raise InvalidQuery(f"unknown index {name!r}; known: {list(FEEDS)}")
        self.search = search
        self.name = name
        self.feed = FEEDS[name]
        self.spec: IndexSpec = static_specs()[name]
        self.redact = redactor or default_redactor()
        self.manager = IndexManager(search)
        self.alias = search.index_name(name)

    async def ensure(self) -> None:
        await self.manager.ensure(self.spec)
        await self.manager.ensure(static_specs()[INGEST_STATE])

    async def index_rows(self, rows: Iterable[Row], *, index: str | None = None) -> tuple[int, list[str]]:
        """Bulk-index rows into `index` (default: the alias). Returns (indexed, skip reasons)."""
        now = datetime.now(UTC).isoformat()
        lines: list[Row] = []
        skipped: list[str] = []
        for row in rows:
            try:
                doc = self.feed.to_doc(row, self.redact)
            except (KeyError, TypeError, ValueError) as exc:
                rid = str(row.get("id", row.get("_id", "?")))
                skipped.append(f"{rid}: {exc.reason if isinstance(exc, MalformedDocument) else repr(exc)}"[:300])
                continue
            doc = {k: v for k, v in doc.items() if v is not None}
            doc["indexed_at"] = now
            lines += [{"index": {"_index": index or self.alias, "_id": doc[self.feed.id_field]}}, doc]
        if not lines:
            return 0, skipped
        res = await self.search.call(self.search.os.bulk(body=lines, request_timeout=120))
        bad = [i["index"] for i in res["items"] if i["index"].get("error")]
        skipped += [f"{b['_id']}: {b['error'].get('type')}" for b in bad]
        return len(lines) // 2 - len(bad), skipped

    # --- feeds ----------------------------------------------------------------------------------
    async def _pg_rows(self, pg: Any, after: str | None, batch: int) -> AsyncIterator[list[Row]]:
        """Keyset pages: `(updated_at, id) > cursor` (or `id > cursor` for the append-only audit log)."""
        table = self.feed.source
        if self.feed.cursor == "id":
            sql = f"SELECT * FROM {table} WHERE ($1::bigint IS NULL OR id > $1::bigint) ORDER BY id LIMIT {batch:d}"
        else:
            sql = (f"SELECT * FROM {table} WHERE ($1::timestamptz IS NULL OR (updated_at, id) > "
                   f"($1::timestamptz, $2::uuid)) ORDER BY updated_at, id LIMIT {batch:d}")
        while True:
            args = _decode_cursor(after, self.feed.cursor)
            async with pg.connection(replica=True) as conn:
                rows = [dict(r) for r in await conn.fetch(sql, *args)]
            if not rows:
                return
            yield rows
            after = _encode_cursor(rows[-1], self.feed.cursor)
            if len(rows) < batch:
                return

    async def _mongo_rows(self, db: Any, batch: int) -> AsyncIterator[list[Row]]:
        coll = db[self.feed.source]
        flt: Row = {}
        if self.name == CREDIT_REPORTS:
            superseded = [i for i in await coll.distinct("supersedes") if i]
            flt = {"_id": {"$nin": superseded}} if superseded else {}
        last = None
        while True:
            page = {**flt, "_id": {**flt.get("_id", {}), "$gt": last}} if last is not None else flt
            rows = await coll.find(page).sort("_id", 1).limit(batch).to_list(batch)
            if not rows:
                return
            yield rows
            last = rows[-1]["_id"]

    async def sync(self, *, postgres: Any = None, mongo_db: Any = None, full: bool = False,
                   index: str | None = None, batch: int = 1000) -> dict[str, Any]:
        """Index rows changed since the last checkpoint (all rows with `full`)."""
        await self.ensure()
        ckpt_id = f"checkpoint:index-{self.name}"
        after = None if full else await self._checkpoint(ckpt_id)
        total, skipped, high = 0, [], after
        if self.feed.kind == "postgres":
            if postgres is None:
                raise InvalidQuery(f"{self.name} is fed from Postgres; connect it")
            pages = self._pg_rows(postgres, after, batch)
        else:
            if mongo_db is None:
                raise InvalidQuery(f"{self.name} is fed from Mongo; connect it")
            pages = self._mongo_rows(mongo_db, batch)
        async for rows in pages:
            n, s = await self.index_rows(rows, index=index)
            total, skipped = total + n, skipped + s
            if self.feed.kind == "postgres":
                high = _encode_cursor(rows[-1], self.feed.cursor)
                if index is None:
                    await self._save_checkpoint(ckpt_id, high)
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


# --- search and analytics ------------------------------------------------------------------------
def searcher_for(search: SearchStore, name: str) -> Searcher:
    spec = static_specs()[name]
    text = {TRANSACTIONS: ("description", "counterparty", "failure_reason"), AUDIT_LOGS: ("reason",),
            CREDIT_REPORTS: ("text",), DISPUTES: ("text",), USERS: ()}[name]
    return Searcher(search, IndexProfile(name=name, filterable=filterable_fields(spec.body), text_fields=text,
                                         highlight_fields=text, source_excludes=()))


async def search_index(search: SearchStore, name: str, scope: RowScope, *, text: str | None = None,
                       filters: dict[str, Any] | None = None, k: int = 20,
                       sort: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Scoped structured search over one index (BM25 on its text fields when `text` is given)."""
    if not 1 <= k <= 100:
        raise InvalidQuery("k must be from 1 to 100")
    s = searcher_for(search, name)
    flt = s.build_filter(scope_filter(scope, public_field=None), filters)
    if text:
        return [{**h.source, "_score": h.score, "_highlights": h.highlights} for h in await s.bm25(text, k, flt)]
    body: dict[str, Any] = {"query": {"bool": {"filter": [flt]}} if flt else {"match_all": {}}}
    if sort:
        body["sort"] = sort
    return [h["_source"] for h in await s._search(body, k)]


async def volume_by_corridor_per_day(search: SearchStore, date_from: datetime, date_to: datetime, *,
                                     statuses: tuple[str, ...] = ("completed",)) -> list[dict[str, Any]]:
    """Per day and corridor: transaction count and summed amount (minor units of the source currency)."""
    body = {"size": 0, "query": {"bool": {"filter": [
        {"range": {"created_at": {"gte": date_from.isoformat(), "lt": date_to.isoformat()}}},
        {"terms": {"status": list(statuses)}}, {"exists": {"field": "corridor"}}]}},
        "aggs": {"day": {"date_histogram": {"field": "created_at", "calendar_interval": "day"},
                         "aggs": {"corridor": {"terms": {"field": "corridor", "size": 100},
                                               "aggs": {"amount": {"sum": {"field": "amount_minor"}},
                                                        "currency": {"terms": {"field": "currency", "size": 1}}}}}}}}
    res = await search.call(search.os.search(index=search.index_name(TRANSACTIONS), body=body))
    out = []
    for day in res["aggregations"]["day"]["buckets"]:
        for c in day["corridor"]["buckets"]:
            cur = c["currency"]["buckets"][0]["key"] if c["currency"]["buckets"] else None
            out.append({"day": day["key_as_string"][:10], "corridor": c["key"], "count": c["doc_count"],
                        "amount_minor": int(c["amount"]["value"]), "currency": cur})
    return out


async def dispute_outcomes(search: SearchStore, *, bureau: str | None = None) -> dict[str, Any]:
    """Counts by outcome and status, and average days open per outcome."""
    flt = [{"term": {"bureau": bureau}}] if bureau else []
    body = {"size": 0, "query": {"bool": {"filter": flt}}, "aggs": {
        "outcome": {"terms": {"field": "outcome", "size": 20}, "aggs": {"days": {"avg": {"field": "days_open"}}}},
        "status": {"terms": {"field": "status", "size": 20}}}}
    res = await search.call(search.os.search(index=search.index_name(DISPUTES), body=body))
    aggs = res["aggregations"]
    return {"total": res["hits"]["total"]["value"],
            "by_outcome": {b["key"]: {"count": b["doc_count"], "avg_days_open": round(b["days"]["value"] or 0, 1)}
                           for b in aggs["outcome"]["buckets"]},
            "by_status": dict(Counter({b["key"]: b["doc_count"] for b in aggs["status"]["buckets"]}))}
