"""Repositories of the credit store.

Reads take a `RowScope` and put it inside the query filter (never filter after fetching), validate
documents with pydantic, cap result sizes at 100, and name `user_id` in every filter (shard targeting);
the one exception is `DisputeRepository.queue`, an explicitly scatter-gather read for support staff.
Values from outside reach filters only through `eq_filter`/`in_filter`. Encrypted PII is decrypted only
for a `RevealGrant`. Writes are service-side (no scope) and never overwrite a version.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from stores.errors import Conflict, InvalidData, NotFound, StoreError
from stores.mongo import collections as names
from stores.mongo.backend_keyset import BackendKeyset, MissingTable, Position
from stores.mongo.cdc import Outbox, dispute_event_id, plan_event_id, report_event_id
from stores.mongo.client import MongoStore, breaker_of
from stores.mongo.documents import (
    DISPUTE_HEAD_FIELDS,
    DISPUTE_TRANSITIONS,
    ActionPlan,
    BureauResponse,
    BureauResponseRef,
    CreditFactor,
    CreditReport,
    Dispute,
    DisputeHead,
    DisputeLetter,
    DisputeStatus,
    ScorePoint,
    StatusChange,
    _utc_ms,
    new_id,
    now,
)
from stores.mongo.encryption import FieldEncryption, encrypt_paths, reveal_paths
from stores.mongo.errors import is_outage, translate
from stores.mongo.reveal import RevealGrant, check_grant
from stores.mongo.safety import MAX_DOCUMENT_BYTES, cap_limit, check_size, eq_filter, in_filter
from stores.scope import RowScope

M = TypeVar("M", bound=BaseModel)
MAX_LIMIT = 100
REPORT_PII_PATHS = ("subject.ssn", "subject.bvn", "subject.nin", "accounts[].account_number")
RESPONSE_PII_PATHS = ("subject.ssn", "subject.bvn", "subject.nin")


def as_db(store: MongoStore | AsyncDatabase) -> AsyncDatabase:
    return store.db if isinstance(store, MongoStore) else store


def user_key(user_id: UUID | str) -> str:
    """Canonical string form of a user id from outside; InvalidData when it is not a UUID."""
    try:
        return str(UUID(str(user_id)))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidData("user_id must be a UUID", store="mongo") from exc


def _allowed(scope: RowScope, user_id: Any) -> bool:
    try:
        return scope.allows(user_id)
    except (ValueError, TypeError):
        return False


def scoped(scope: RowScope, *clauses: dict[str, Any]) -> dict[str, Any]:
    """AND of the scope's filter and `clauses`, built inside the query.

    When a clause pins `user_id` to one value the scope allows, the scope condition is implied and left
    out, and clauses on distinct keys (fields, or one top-level operator such as a cursor's `$or`) are
    merged into one document, which is the same AND: FerretDB pushes its top-level equalities down to
    indexes and applies the rest in memory, while it pushes nothing of an `$and`. Clauses that repeat a
    key stay an `$and` that keeps every condition intact.
    """
    parts = [c for c in clauses if c]
    pinned = next((c["user_id"]["$eq"] for c in parts if isinstance(c.get("user_id"), dict)
                   and set(c["user_id"]) == {"$eq"}), None)
    if pinned is None or not _allowed(scope, pinned):
        parts.insert(0, scope.mongo_filter("user_id"))
        parts = [c for c in parts if c]
    if not parts:
        return {}
    merged: dict[str, Any] = {}
    for part in parts:
        if any(k in merged for k in part):
            return parts[0] if len(parts) == 1 else {"$and": parts}
        merged.update(part)
    return merged


@contextlib.asynccontextmanager
async def guard(what: str, target: AsyncDatabase | AsyncCollection | None = None
                ) -> AsyncIterator[None]:
    """Translate driver errors into typed store errors with safe messages (`stores.mongo.errors`).

    With `target` (the database or collection the block uses), the call passes the breaker of the MongoStore
    that made its client: refused at once while it is open, its outcome recorded otherwise.
    """
    # Not getattr(target, "database"): on a Database that attribute is a collection named "database".
    db = target.database if isinstance(target, AsyncCollection) else target
    breaker = breaker_of(db) if db is not None else None
    if breaker is not None:
        breaker.check()
    try:
        yield
    except Exception as exc:
        err = translate(exc, what)
        if breaker is not None:
            if is_outage(err):
                breaker.failure(err)
            else:
                breaker.success()
        if err is exc:
            raise
        raise err from exc
    else:
        if breaker is not None:
            breaker.success()


def _parse(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidData(f"stored {model.__name__} failed validation ({exc.error_count()} errors)",
                          store="mongo") from exc


def _revalidate(model: type[M], doc: M) -> M:
    """Validate a model instance again (callers may have built it with model_construct/assignment)."""
    try:
        return model.model_validate(doc.model_dump(by_alias=True))
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
        raise InvalidData(f"{model.__name__} failed validation: {', '.join(fields)}", store="mongo") from exc


async def insert_many_idempotent(coll: AsyncCollection, docs: list[dict[str, Any]]) -> int:
    """Unordered insert that treats duplicate keys as already written; returns how many were new."""
    if not docs:
        return 0
    try:
        async with guard(f"write {coll.name}", coll):
            res = await coll.insert_many(docs, ordered=False)
        return len(res.inserted_ids)
    except StoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, BulkWriteError) and all(e.get("code") == 11000 for e in cause.details["writeErrors"]):
            return int(cause.details.get("nInserted", 0))
        raise


class _Repo:
    collection: str

    def __init__(self, store: MongoStore | AsyncDatabase, *, encryption: FieldEncryption | None = None,
                 outbox: Outbox | None = None) -> None:
        self.db = as_db(store)
        self.coll: AsyncCollection = self.db[self.collection]
        self.encryption = encryption
        self.outbox = outbox if outbox is not None else Outbox(self.db)

    async def _find(self, model: type[M], flt: dict[str, Any], sort: Sequence[tuple[str, int]], limit: int,
                    *, pii_paths: Sequence[str] = (), reveal: RevealGrant | None = None,
                    comment: str | None = None) -> list[M]:
        grant = check_grant(reveal, what=self.collection)  # refused before the query runs
        if grant is not None and self.encryption is None:
            raise InvalidData(f"{self.collection}: revealing PII needs field encryption configured", store="mongo")
        kwargs = {"comment": comment} if comment else {}
        async with guard(f"read {self.collection}", self.db):
            rows = await self.coll.find(flt, **kwargs).sort(list(sort)).limit(limit).to_list(limit)
        out = []
        for raw in rows:
            if pii_paths:
                await reveal_paths(self.encryption, raw, pii_paths, self.collection, reveal=grant is not None)
            out.append(_parse(model, raw))
        return out

    async def _one(self, model: type[M], flt: dict[str, Any], sort: Sequence[tuple[str, int]] = (),
                   *, pii_paths: Sequence[str] = (), reveal: RevealGrant | None = None) -> M:
        rows = await self._find(model, flt, sort or [("_id", ASCENDING)], 1, pii_paths=pii_paths, reveal=reveal)
        if not rows:
            raise NotFound(f"no such {model.__name__}", store="mongo")
        return rows[0]

    async def _to_stored(self, doc: BaseModel, pii_paths: Sequence[str] = ()) -> dict[str, Any]:
        raw = doc.to_mongo()  # type: ignore[attr-defined]
        if pii_paths:
            if self.encryption is None:
                raise InvalidData(f"{self.collection}: PII fields need field encryption configured", store="mongo")
            await encrypt_paths(self.encryption, raw, pii_paths, self.collection)
        check_size(raw, MAX_DOCUMENT_BYTES, what=self.collection)
        return raw

    def _has_pii(self, doc: BaseModel, paths: Sequence[str]) -> bool:
        from stores.mongo.encryption import _walk

        raw = doc.model_dump(by_alias=True)
        return any(raw_c[k] for p in paths for raw_c, k in _walk(raw, p.split(".")))


class _Versioned(_Repo):
    """Insert-only versions: unique (identity..., version) index, retry on a concurrent writer.

    A `valid_from` the caller set is kept (a backfilled version), and must not be earlier than the previous
    version's; unset, it is now (or the previous version's, if that lies ahead).
    """

    identity: tuple[str, ...]
    max_retries = 50

    async def _insert_version(self, model: type[M], doc: M, pii_paths: Sequence[str]) -> M:
        given_from = "valid_from" in doc.model_fields_set  # before revalidation marks every field as set
        doc = _revalidate(model, doc)
        ident = {k: getattr(doc, k) for k in self.identity}
        for attempt in range(self.max_retries):
            flt = {k: {"$eq": str(v)} for k, v in ident.items()}
            async with guard(f"read {self.collection}", self.db):
                prev = await self.coll.find_one(flt, {"version": 1, "valid_from": 1, "created_at": 1},
                                                sort=[("version", DESCENDING)])
            ts = now()
            update: dict[str, Any] = {"id": new_id(), "version": (prev["version"] + 1) if prev else 1,
                                      "supersedes": prev["_id"] if prev else None, "created_at": ts}
            if "valid_from" in model.model_fields:
                prev_from = _utc_ms(prev["valid_from"]) if prev else None
                if given_from:
                    if prev_from is not None and doc.valid_from < prev_from:  # type: ignore[attr-defined]
                        raise InvalidData(f"{self.collection}: valid_from is earlier than the previous "
                                          f"version's ({prev_from.isoformat()})", store="mongo")
                else:
                    update["valid_from"] = max(ts, prev_from or ts)
            new = doc.model_copy(update=update)
            raw = await self._to_stored(new, pii_paths if self._has_pii(new, pii_paths) else ())
            try:
                async with guard(f"write {self.collection}", self.db):
                    await self.coll.insert_one(raw)
                return new
            except Conflict:
                await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise Conflict(f"{self.collection}: too many concurrent writers for one version", store="mongo")


# ---------------------------------------------------------------------------------------------
class CreditReportRepository(_Versioned):
    """Versioned credit reports: a change writes a new version, reads return the latest by default."""

    collection = names.CREDIT_REPORTS
    identity = ("user_id", "bureau")
    _newest = (("valid_from", DESCENDING), ("version", DESCENDING))

    def _flt(self, scope: RowScope, user_id: UUID | str, bureau: str | None, *extra: dict[str, Any]) -> dict:
        clauses = [eq_filter("user_id", user_key(user_id))]
        if bureau is not None:
            clauses.append(eq_filter("bureau", bureau))
        return scoped(scope, *clauses, *extra)

    async def latest(self, scope: RowScope, user_id: UUID | str, *, bureau: str | None = None,
                     reveal: RevealGrant | None = None) -> CreditReport:
        """Newest version (of `bureau`, or across bureaus). NotFound when none is visible."""
        return await self._one(CreditReport, self._flt(scope, user_id, bureau), self._newest,
                               pii_paths=REPORT_PII_PATHS, reveal=reveal)

    async def get_version(self, scope: RowScope, user_id: UUID | str, version: int, *,
                          bureau: str | None = None, reveal: RevealGrant | None = None) -> CreditReport:
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidData("version must be a positive integer", store="mongo")
        return await self._one(CreditReport, self._flt(scope, user_id, bureau, eq_filter("version", version)),
                               self._newest, pii_paths=REPORT_PII_PATHS, reveal=reveal)

    async def as_of(self, scope: RowScope, user_id: UUID | str, when: datetime, *, bureau: str | None = None,
                    reveal: RevealGrant | None = None) -> CreditReport:
        """The version valid at `when` (newest with valid_from <= when)."""
        if not isinstance(when, datetime):
            raise InvalidData("when must be a datetime", store="mongo")
        return await self._one(CreditReport, self._flt(scope, user_id, bureau, {"valid_from": {"$lte": _utc_ms(when)}}),
                               self._newest, pii_paths=REPORT_PII_PATHS, reveal=reveal)

    async def list_versions(self, scope: RowScope, user_id: UUID | str, *, bureau: str | None = None,
                            limit: int = MAX_LIMIT, reveal: RevealGrant | None = None) -> list[CreditReport]:
        """Versions newest first (at most 100)."""
        return await self._find(CreditReport, self._flt(scope, user_id, bureau), self._newest,
                                cap_limit(limit, MAX_LIMIT), pii_paths=REPORT_PII_PATHS, reveal=reveal)

    async def add_version(self, report: CreditReport) -> CreditReport:
        """Write `report` as the next version of (user_id, bureau); its `_id`, version, supersedes and
        created_at are assigned here, `valid_from` too unless given (see `_Versioned`). Emits a
        `credit_reports` change event."""
        new = await self._insert_version(CreditReport, report, REPORT_PII_PATHS)
        async with guard("emit credit_reports event", self.db):
            await self.outbox.emit(self.collection, "insert", new.id, new.user_id,
                                   {"bureau": str(new.bureau), "version": new.version},
                                   event_id=report_event_id(new.id))
        return new


class ScoreHistoryRepository(_Repo):
    """Score time series per user (monthly bureau points and estimates)."""

    collection = names.SCORE_HISTORY

    async def series(self, scope: RowScope, user_id: UUID | str, date_from: datetime | None = None,
                     date_to: datetime | None = None, *, bureau: str | None = None,
                     limit: int = MAX_LIMIT) -> list[ScorePoint]:
        """Points oldest first; with more than `limit` (max 100) in range, the newest `limit`."""
        clauses: list[dict[str, Any]] = [eq_filter("user_id", user_key(user_id))]
        rng: dict[str, Any] = {}
        if date_from is not None:
            rng["$gte"] = _utc_ms(date_from)
        if date_to is not None:
            rng["$lte"] = _utc_ms(date_to)
        if rng:
            clauses.append({"as_of": rng})
        if bureau is not None:
            clauses.append(eq_filter("bureau", bureau))
        rows = await self._find(ScorePoint, scoped(scope, *clauses), [("as_of", DESCENDING)],
                                cap_limit(limit, MAX_LIMIT, MAX_LIMIT))
        return rows[::-1]

    async def record(self, point: ScorePoint) -> ScorePoint:
        """Idempotent: one point per (user, bureau, model, as_of); an existing point is kept."""
        point = _revalidate(ScorePoint, point)
        raw = await self._to_stored(point)
        key = {k: {"$eq": raw[k]} for k in ("user_id", "bureau", "score_model", "as_of")}
        with contextlib.suppress(Conflict):  # a concurrent upsert of the same point won
            async with guard("write score_history", self.db):
                await self.coll.update_one(key, {"$setOnInsert": raw}, upsert=True)
        return point


#: Marks the read of the dispute queue, the one read without `user_id`, on the server (visible in profilers and
#: command monitoring): the scatter-gather find (the keyset page is marked by `backend_keyset.COMMENT`).
QUEUE_COMMENT = "scatter-gather: dispute queue across users (status_updated / updated index)"


class DisputeRepository(_Repo):
    """Dispute cases and their state machine (opened → submitted_to_bureau → under_review → resolved|rejected).

    `keyset` (FerretDB's backend, `stores.mongo.backend_keyset`) serves the queue's order; by default the
    MongoStore's, when it was given FerretDB's PostgreSQL URL.
    """

    collection = names.DISPUTE_CASES
    claim_timeout = 10.0  # seconds after which a claim without its update is rolled forward
    _order = (("updated_at", DESCENDING), ("_id", DESCENDING))

    def __init__(self, store: MongoStore | AsyncDatabase, *, encryption: FieldEncryption | None = None,
                 outbox: Outbox | None = None, keyset: BackendKeyset | None = None) -> None:
        super().__init__(store, encryption=encryption, outbox=outbox)
        # Not getattr(store, "keyset"): on a Database that attribute is a collection named "keyset".
        self.keyset = keyset if keyset is not None else store.keyset if isinstance(store, MongoStore) else None

    async def create(self, dispute: Dispute, *, actor: str = "system") -> Dispute:
        dispute = _revalidate(Dispute, dispute)
        if dispute.status is not DisputeStatus.OPENED:
            raise InvalidData("a dispute starts in status 'opened'", store="mongo")
        ts = now()
        dispute = dispute.model_copy(update={
            "opened_at": ts, "updated_at": ts, "revision": 1, "last_event_id": dispute_event_id(dispute.id, 1),
            "status_history": [StatusChange(from_status=None, to_status=DisputeStatus.OPENED, at=ts,
                                            note=dispute.notes, actor=actor)]})
        async with guard("write dispute_cases", self.db):
            await self.coll.insert_one(await self._to_stored(dispute))
            await self.outbox.emit(self.collection, "insert", dispute.id, dispute.user_id,
                                   {"status": dispute.status.value, "revision": 1},
                                   event_id=dispute.last_event_id or "")
        return dispute

    @staticmethod
    def _query_hash(scope: RowScope, user_id: str | None, status: str | None, kind: str = "list") -> str:
        basis = json.dumps([kind, scope.all_users, sorted(map(str, scope.user_ids)), user_id, status])
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    def _encode_cursor(self, last: Dispute, qh: str) -> str:
        body = json.dumps({"t": int(last.updated_at.timestamp() * 1000), "i": last.id, "q": qh})
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str, qh: str) -> tuple[datetime, str]:
        from datetime import UTC

        try:
            body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            t, i, q = int(body["t"]), str(body["i"]), str(body["q"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidData("invalid cursor", store="mongo") from exc
        if q != qh:
            raise InvalidData("cursor does not belong to this query", store="mongo")
        return datetime.fromtimestamp(t / 1000, UTC), i

    async def list(self, scope: RowScope, *, user_id: UUID | str | None = None, status: str | None = None,
                   cursor: str | None = None, limit: int = 20) -> tuple[list[Dispute], str | None]:
        """A page of disputes newest-updated first, and the cursor of the next page (None at the end).

        Targeted: the filter names `user_id` (the argument, or the scope's users). An all-users scope
        without `user_id` is refused: that read is `queue()`. The cursor carries only a position and a
        digest of (scope, user_id, status): it never widens the scope, which is re-applied on every page.
        """
        uid = user_key(user_id) if user_id is not None else None
        if uid is None and scope.all_users:
            raise InvalidData("user_id is required to list disputes (the cross-user read is the queue)",
                              store="mongo")
        return await self._page(scope, uid, status, cursor, limit)

    async def queue(self, scope: RowScope, *, status: str | None = None, cursor: str | None = None,
                    limit: int = 20) -> tuple[list[DisputeHead], str | None]:
        """Scatter-gather: every user's disputes newest-updated first, for an all-users (staff) scope only; each
        case as its `DisputeHead` (what a queue lists; `get` reads a whole case).

        The one read without `user_id` in its filter: on a sharded cluster it visits every shard. It is served
        by the `status_updated` / `updated` indexes and tagged with `QUEUE_COMMENT` on the server. On FerretDB
        (which sorts in memory after decoding every match) with its backend known, the page and its cases' heads
        are read in one statement from PostgreSQL's btree index instead (`_keyset_page`); without it, or before
        the collection exists, the find above.
        """
        if not scope.all_users:
            raise InvalidData("the dispute queue needs an all-users scope; list by user instead", store="mongo")
        if self.keyset is not None:
            with contextlib.suppress(MissingTable):  # not FerretDB's PostgreSQL, or no such collection yet
                return await self._keyset_page(scope, status, cursor, limit)
        items, nxt = await self._page(scope, None, status, cursor, limit, kind="queue", comment=QUEUE_COMMENT)
        return [_parse(DisputeHead, d.model_dump(by_alias=True)) for d in items], nxt

    async def _keyset_page(self, scope: RowScope, status: str | None, cursor: str | None,
                           limit: int) -> tuple[list[DisputeHead], str | None]:
        """The queue on FerretDB: the page from PostgreSQL's btree index (`updated`, or `status_updated` with a
        status), each row's head fields read with its position from FerretDB's table in the same statement.

        Same order, cursor and page size as `_page`, one snapshot. (It used to read each case through FerretDB
        by `_id` after the page: twenty point reads, each a document FerretDB decodes whole, most of the
        queue's time for fields the index walk had at hand.)
        """
        assert self.keyset is not None
        assert scope.all_users  # no row filter to apply: `queue` admits all-users scopes only
        limit = cap_limit(limit, 20, MAX_LIMIT)
        status = self._check_status(status)
        qh = self._query_hash(scope, None, status, "queue")
        after = None
        if cursor:
            t, i = self._decode_cursor(cursor, qh)
            after = Position(round(t.timestamp() * 1000), i)
        async with guard(f"read {self.collection}", self.db):  # the credit store's breaker covers its backend
            pos = await self.keyset.page(self.collection, "updated_at", eq={"status": status} if status else None,
                                         after=after, limit=limit + 1, fields=DISPUTE_HEAD_FIELDS)
        items = [_parse(DisputeHead, {"_id": p.id, **p.fields}) for p in pos[:limit]]
        nxt = None
        if len(pos) > limit:
            last = pos[limit - 1]
            body = json.dumps({"t": last.value, "i": last.id, "q": qh})
            nxt = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return items, nxt

    @staticmethod
    def _check_status(status: str | None) -> str | None:
        if status is not None and (not isinstance(status, str) or status not in {s.value for s in DisputeStatus}):
            raise InvalidData("unknown dispute status", store="mongo")
        return status

    async def _page(self, scope: RowScope, uid: str | None, status: str | None, cursor: str | None, limit: int,
                    *, kind: str = "list", comment: str | None = None) -> tuple[list[Dispute], str | None]:
        limit = cap_limit(limit, 20, MAX_LIMIT)
        status = self._check_status(status)
        clauses: list[dict[str, Any]] = []
        if uid is not None:
            clauses.append(eq_filter("user_id", uid))
        if status is not None:
            clauses.append(eq_filter("status", status))
        qh = self._query_hash(scope, uid, status, kind)
        if cursor:
            t, i = self._decode_cursor(cursor, qh)
            clauses.append({"$or": [{"updated_at": {"$lt": t}}, {"updated_at": {"$eq": t}, "_id": {"$lt": i}}]})
        rows = await self._find(Dispute, scoped(scope, *clauses), self._order, limit + 1, comment=comment)
        items = rows[:limit]
        nxt = self._encode_cursor(items[-1], qh) if len(rows) > limit else None
        return items, nxt

    @staticmethod
    def _check_id(dispute_id: Any) -> str:
        if not isinstance(dispute_id, str) or not dispute_id or len(dispute_id) > 200:
            raise InvalidData("dispute_id must be a non-empty string", store="mongo")
        return dispute_id

    async def get(self, scope: RowScope, user_id: UUID | str, dispute_id: str) -> Dispute:
        """One dispute of `user_id`; NotFound when it does not exist, belongs to another user or is outside
        `scope` (the three are not told apart)."""
        flt = scoped(scope, eq_filter("user_id", user_key(user_id)), eq_filter("_id", self._check_id(dispute_id)))
        return await self._one(Dispute, flt)

    async def _current(self, dispute_id: str) -> Dispute:
        """Service-side writes address a case by `_id` alone (a single-document update may, when sharded)."""
        return await self._one(Dispute, eq_filter("_id", self._check_id(dispute_id)))

    async def _claim(self, cur: Dispute, rev: int, update: dict[str, Any], event_data: dict[str, Any]) -> None:
        """Claim revision `rev` through a unique `_id` (atomic on every server; FerretDB 1.x does not make
        a filtered update a compare-and-set). A claim whose writer died is rolled forward, then Conflict."""
        claims = self.db[names.WRITE_CLAIMS]
        claim_id = dispute_event_id(cur.id, rev)
        ts = now()
        doc = {"_id": claim_id, "set": update.get("$set", {}), "push": update.get("$push", {}),
               "event": event_data, "created_at": ts, "expires_at": ts + timedelta(days=1)}
        try:
            await claims.insert_one(doc)
            return
        except DuplicateKeyError:
            held = await claims.find_one({"_id": {"$eq": claim_id}})
        if held and (ts - _utc_ms(held["created_at"])).total_seconds() > self.claim_timeout:
            fwd = {"$set": held["set"]} | ({"$push": held["push"]} if held["push"] else {})
            res = await self.coll.update_one({"_id": {"$eq": cur.id}, "revision": {"$eq": cur.revision}}, fwd)
            if res.matched_count:
                await self.outbox.emit(self.collection, "update", cur.id, cur.user_id, held["event"],
                                       event_id=claim_id)
        raise Conflict("dispute changed concurrently; retry", store="mongo")

    async def _update(self, cur: Dispute, update: dict[str, Any], event_data: dict[str, Any]) -> Dispute:
        rev = cur.revision + 1
        event_id = dispute_event_id(cur.id, rev)
        update.setdefault("$set", {}).update({"updated_at": now(), "revision": rev, "last_event_id": event_id})
        event_data = {**event_data, "revision": rev}
        async with guard("write dispute_cases", self.db):
            await self._claim(cur, rev, update, event_data)
            res = await self.coll.update_one({"_id": {"$eq": cur.id}, "revision": {"$eq": cur.revision}}, update)
            if res.matched_count == 0:
                raise Conflict("dispute changed concurrently; retry", store="mongo")
            await self.outbox.emit(self.collection, "update", cur.id, cur.user_id, event_data, event_id=event_id)
        return await self._current(cur.id)

    async def transition(self, dispute_id: str, to_status: DisputeStatus | str, note: str | None = None,
                         *, actor: str = "system") -> Dispute:
        """Move along the state machine; an illegal move raises InvalidData, a concurrent one Conflict."""
        try:
            target = DisputeStatus(to_status)
        except ValueError as exc:
            raise InvalidData("unknown dispute status", store="mongo") from exc
        cur = await self._current(dispute_id)
        if target not in DISPUTE_TRANSITIONS[cur.status]:
            raise InvalidData(f"illegal dispute transition {cur.status.value} -> {target.value}", store="mongo")
        ts = now()
        change = StatusChange(from_status=cur.status, to_status=target, at=ts, note=note, actor=actor)
        sets: dict[str, Any] = {"status": target.value}
        if target in (DisputeStatus.RESOLVED, DisputeStatus.REJECTED):
            sets["resolved_at"] = ts
        return await self._update(cur, {"$set": sets, "$push": {"status_history": change.model_dump()}},
                                  {"status": target.value, "from": cur.status.value})

    async def add_letter(self, dispute_id: str, letter: DisputeLetter) -> Dispute:
        letter = _revalidate(DisputeLetter, letter)
        cur = await self._current(dispute_id)
        return await self._update(cur, {"$push": {"letters": letter.model_dump()}},
                                  {"status": cur.status.value, "letter": letter.letter_id})

    async def attach_response(self, dispute_id: str, ref: BureauResponseRef) -> Dispute:
        cur = await self._current(dispute_id)
        return await self._update(cur, {"$push": {"bureau_responses": ref.model_dump()}},
                                  {"status": cur.status.value, "response": ref.response_id})


class ActionPlanRepository(_Versioned):
    """Versioned credit-building plans."""

    collection = names.ACTION_PLANS
    identity = ("user_id",)

    async def latest(self, scope: RowScope, user_id: UUID | str) -> ActionPlan:
        return await self._one(ActionPlan, scoped(scope, eq_filter("user_id", user_key(user_id))),
                               [("version", DESCENDING)])

    async def list_versions(self, scope: RowScope, user_id: UUID | str, *, limit: int = 20) -> list[ActionPlan]:
        return await self._find(ActionPlan, scoped(scope, eq_filter("user_id", user_key(user_id))),
                                [("version", DESCENDING)], cap_limit(limit, 20, MAX_LIMIT))

    async def add_version(self, plan: ActionPlan) -> ActionPlan:
        """Write `plan` as the user's next version. Emits an `action_plans` change event (the search
        indexer follows it; `Outbox.reconcile` re-emits it if the outbox write was lost)."""
        new = await self._insert_version(ActionPlan, plan, ())
        async with guard("emit action_plans event", self.db):
            await self.outbox.emit(self.collection, "insert", new.id, new.user_id, {"version": new.version},
                                   event_id=plan_event_id(new.id))
        return new


class BureauResponseRepository(_Repo):
    """Bureau answers to disputes; subject identifiers encrypted at rest."""

    collection = names.BUREAU_RESPONSES

    async def add(self, response: BureauResponse, disputes: DisputeRepository | None = None) -> BureauResponse:
        """Store the response and reference it from its dispute."""
        response = _revalidate(BureauResponse, response)
        raw = await self._to_stored(response, RESPONSE_PII_PATHS if self._has_pii(response, RESPONSE_PII_PATHS)
                                    else ())
        async with guard("write bureau_responses", self.db):
            await self.coll.insert_one(raw)
        repo = disputes or DisputeRepository(self.db, encryption=self.encryption, outbox=self.outbox)
        await repo.attach_response(response.dispute_id, BureauResponseRef(
            response_id=response.id, received_at=response.received_at, outcome=response.outcome))
        return response

    async def for_dispute(self, scope: RowScope, user_id: UUID | str, dispute_id: str, *, limit: int = 20,
                          reveal: RevealGrant | None = None) -> list[BureauResponse]:
        flt = scoped(scope, eq_filter("user_id", user_key(user_id)), eq_filter("dispute_id", dispute_id))
        return await self._find(BureauResponse, flt, [("received_at", DESCENDING)], cap_limit(limit, 20, MAX_LIMIT),
                                pii_paths=RESPONSE_PII_PATHS, reveal=reveal)


class CreditFactorRepository(_Repo):
    """Scoring factors derived from report versions (one per factor and report)."""

    collection = names.CREDIT_FACTORS

    async def add_many(self, factors: Sequence[CreditFactor]) -> int:
        """Insert factors, skipping those already stored (idempotent); returns how many were new."""
        docs = [await self._to_stored(_revalidate(CreditFactor, f)) for f in factors]
        return await insert_many_idempotent(self.coll, docs)

    async def for_user(self, scope: RowScope, user_id: UUID | str, *, report_id: str | None = None,
                       limit: int = 50) -> list[CreditFactor]:
        clauses = [eq_filter("user_id", user_key(user_id))]
        if report_id is not None:
            clauses.append(eq_filter("report_id", report_id))
        return await self._find(CreditFactor, scoped(scope, *clauses), [("as_of", DESCENDING), ("weight", DESCENDING)],
                                cap_limit(limit, 50, MAX_LIMIT))


__all__ = [
    "ActionPlanRepository", "BureauResponseRepository", "CreditFactorRepository", "CreditReportRepository",
    "DisputeRepository", "ScoreHistoryRepository", "as_db", "in_filter", "scoped", "user_key",
]
