"""Sorted keyset pages that FerretDB cannot serve, read from its PostgreSQL tables' own btree indexes.

FerretDB 1.24 pushes no sort down (only `$natural`) and no limit once there is a filter: a newest-first page
across all users makes it read and decode every matching document (about 1 ms each on this machine, so 15 s
for 6.7k disputes at 10k users) before it sorts and keeps 21. Yet for each Mongo index we declare it creates a
btree expression index on its table, e.g. `((_jsonb -> 'updated_at') DESC, (_jsonb -> '_id') DESC)`: a
PostgreSQL keyset query in that order walks the index and stops after `limit` rows (under 1 ms at any size).

This module reads that: the `(sort value, _id)` positions of one page and, when asked, a few top-level scalar
fields of the same rows (`page(fields=...)`), decoded from FerretDB's storage format by the type its `$s` schema
records (string, number, boolean, null, date as epoch milliseconds; anything else is refused). Those rows are
FerretDB's own table, read in the page's snapshot: fresh, not a copy. A caller that needs whole documents reads
each through FerretDB by `_id` (a pushed-down equality on the `_id` pushdown index).

Ordering matches FerretDB's and MongoDB's: FerretDB stores a date as its epoch milliseconds (a JSON number,
compared numerically) and a string as a JSON string, compared in the database's collation, which is byte order
under `C`/`C.UTF-8` as the local stack's cluster is; ids are fixed-shape UUID strings, which compare the same
under any collation. Reads run in read-only transactions with a statement timeout.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from bson import ObjectId

from stores.errors import StoreConfigError, StoreError, StoreUnavailable, redact_url
from stores.mongo.safety import check_field

METADATA_TABLE = "_ferretdb_database_metadata"
#: SQL comment on every page query (pg_stat_statements and slow-query logs say who ran it).
COMMENT = "/* kredete: keyset page on FerretDB's btree index */"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _page_args(eq: dict[str, Any], after: Position | None, limit: int) -> list[Any]:
    """The parameters of `page_sql`: the `eq` values, the position after which the page starts, the limit."""
    args: list[Any] = [json.dumps(v) for v in eq.values()]
    if after is not None:
        args += [json.dumps(after.value), json.dumps(after.id)]
    return [*args, limit]


@dataclass(frozen=True)
class Position:
    """Where a document sits in the order: its sort value (epoch ms for a date) and its `_id`; `fields`: the
    top-level values the page asked for (`page(fields=...)`), decoded."""

    value: int
    id: str
    fields: dict[str, Any] = dataclass_field(default_factory=dict, compare=False)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: FerretDB's `$s` types of the scalar values `page(fields=...)` decodes (a missing field reads as null).
_SCALARS = frozenset({"string", "int", "long", "double", "bool", "null", "date"})


def _decode(raw: str | None, kind: str | None, what: str) -> Any:
    """One top-level value as FerretDB stores it: JSON, typed by its `$s` entry."""
    if raw is None or kind in (None, "null"):
        return None
    if kind not in _SCALARS:
        raise StoreError(f"{what}: a stored {kind} is not a scalar the keyset reads", store="mongo")
    value = json.loads(raw)
    if kind == "date":
        return _EPOCH + timedelta(milliseconds=int(value))  # exact, like BSON's own decoding
    return value


def _extra_sql(fields: Sequence[str]) -> str:
    """Top-level values returned with each position, as JSON text with their `$s` type."""
    return "".join(f", (_jsonb -> '{f}')::text AS \"v_{f}\", _jsonb #>> '{{$s,p,{f},t}}' AS \"t_{f}\""
                   for f in fields)


def epoch_ms(value: datetime) -> int:
    """A datetime as FerretDB stores a BSON date: epoch milliseconds (sub-millisecond part dropped, as BSON does)."""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class Cond:
    """`field op value` on a top-level field: a date (a datetime value) or an integer, op one of < <= > >=."""

    field: str
    op: str
    value: datetime | int

    def __post_init__(self) -> None:
        if self.op not in ("<", "<=", ">", ">="):
            raise StoreError(f"unsupported comparison {self.op!r}", store="mongo")
        if isinstance(self.value, bool) or not isinstance(self.value, (datetime, int)):
            raise StoreError(f"{self.field}: ranges compare dates or integers", store="mongo")


def _cond_arg(c: Cond) -> str:
    return json.dumps(epoch_ms(c.value) if isinstance(c.value, datetime) else c.value)


class MissingTable(StoreError):
    """FerretDB keeps no table for the collection in this database (or the backend is not FerretDB's)."""


class NotServed(MissingTable):
    """A range read met a document whose `_id` is not a string (an ObjectId, say): the caller reads by the find,
    as it does without a table (the ids returned are strings, used as `_id` equalities)."""


class BackendKeyset:
    """Keyset pages over one FerretDB database's tables (schema = the database's name).

    `page(collection, sort_field, eq=..., after=..., limit=...)` returns up to `limit` positions ordered by
    `(sort_field, _id)` descending, strictly after `after`, among documents whose top-level `eq` fields equal
    the given values. PostgreSQL serves it from the btree index FerretDB built for a Mongo index with those keys
    (`eq` fields first, then `sort_field` and `_id` descending); without such an index it would sort the rows.
    """

    def __init__(self, url: str, db_name: str, *, timeout: float = 5.0, statement_timeout_ms: int = 5_000) -> None:
        self._url = url
        self.db_name = db_name
        self._timeout = timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._tables: dict[str, str] = {}

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._url, min_size=0, max_size=2, timeout=self._timeout,
                        command_timeout=self._timeout + self._statement_timeout_ms / 1000,
                        server_settings={"default_transaction_read_only": "on",
                                         "statement_timeout": str(self._statement_timeout_ms),
                                         "application_name": "kredete-keyset"})
                except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
                        asyncpg.InvalidCatalogNameError) as exc:
                    raise StoreConfigError(f"FerretDB's PostgreSQL refused {redact_url(self._url)}",
                                           store="mongo") from exc
                except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    raise StoreUnavailable(f"FerretDB's PostgreSQL is unreachable ({type(exc).__name__})",
                                           store="mongo") from exc
            return self._pool

    async def _table(self, conn: asyncpg.Connection, collection: str) -> str:
        if collection not in self._tables:
            meta = f"{_ident(self.db_name)}.{METADATA_TABLE}"
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", meta):
                raise MissingTable(f"no FerretDB database {self.db_name!r} in its PostgreSQL", store="mongo")
            table = await conn.fetchval(f"SELECT _jsonb->>'table' FROM {meta} WHERE _jsonb->>'_id' = $1", collection)
            if table is None:
                raise MissingTable(f"no collection {collection!r}", store="mongo")
            self._tables[collection] = table
        return self._tables[collection]

    @staticmethod
    def page_sql(table: str, schema: str, sort_field: str, eq_fields: Sequence[str], with_after: bool,
                 fields: Sequence[str] = ()) -> str:
        """The page query (field names are code-chosen; every value is a parameter); `fields`: top-level values
        returned with each position, as JSON text with their `$s` type."""
        for f in (sort_field, *eq_fields, *fields):
            if "." in check_field(f):  # `_jsonb -> 'a.b'` would name a top-level key with a dot in it
                raise StoreError(f"keyset pages take top-level fields only, not {f!r}", store="mongo")
        key = f"(_jsonb -> '{sort_field}')"
        where = [f"(_jsonb -> '{f}') = ${n}::jsonb" for n, f in enumerate(eq_fields, 1)]
        n = len(eq_fields)
        if with_after:
            where.append(f"({key}, (_jsonb -> '_id')) < (${n + 1}::jsonb, ${n + 2}::jsonb)")
            n += 2
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        extra = _extra_sql(fields)
        return (f"SELECT {COMMENT} ({key})::text AS v, _jsonb ->> '_id' AS id{extra} "
                f"FROM {_ident(schema)}.{_ident(table)}{cond} "
                f"ORDER BY {key} DESC, (_jsonb -> '_id') DESC LIMIT ${n + 1}")

    async def _fetch(self, collection: str, make_sql: Callable[[str], str], args: Sequence[Any],
                     *, value: bool = False) -> Any:
        """Run the statement `make_sql(table)` (rows, or its one value); a table dropped and made again meanwhile
        is looked up once more. MissingTable: no such collection (or not FerretDB's PostgreSQL)."""
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn:
                for attempt in (0, 1):
                    sql = make_sql(await self._table(conn, collection))
                    try:
                        return await (conn.fetchval(sql, *args) if value else conn.fetch(sql, *args))
                    except asyncpg.UndefinedTableError:
                        self._tables.pop(collection, None)  # dropped and created again: a new table name
                        if attempt:
                            raise MissingTable(f"no collection {collection!r}", store="mongo") from None
        except StoreError:
            raise
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                asyncpg.QueryCanceledError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"FerretDB's PostgreSQL did not answer ({type(exc).__name__})",
                                   store="mongo") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"keyset read on {collection} refused ({type(exc).__name__})", store="mongo") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _positions(collection: str, key: str, rows: Sequence[Any], fields: Sequence[str]) -> list[Position]:
        out = []
        for r in rows:
            try:
                value = int(r["v"])
            except (TypeError, ValueError) as exc:  # a sort value that is not a date or integer
                raise StoreError(f"{collection}: a {key} that is not a date or an integer", store="mongo") from exc
            out.append(Position(value, str(r["id"]), {f: _decode(r[f"v_{f}"], r[f"t_{f}"], f"{collection}.{f}")
                                                      for f in fields}))
        return out

    async def page(self, collection: str, sort_field: str, *, eq: dict[str, Any] | None = None,
                   after: Position | None = None, limit: int, fields: Sequence[str] = ()) -> list[Position]:
        eq = eq or {}
        rows = await self._fetch(collection, lambda table: self.page_sql(table, self.db_name, sort_field, list(eq),
                                                                         after is not None, fields),
                                 _page_args(eq, after, limit))
        return self._positions(collection, sort_field, rows, fields)

    # ranges --------------------------------------------------------------------------------------------------
    @staticmethod
    def range_sql(table: str, schema: str, key: str, where: Sequence[Cond], *, order: str = "asc",
                  limit: bool = False, fields: Sequence[str] = (), count: bool = False) -> str:
        """Rows whose `where` conditions all hold, in `key` order (ties in no given order, as a find's sort on one
        field leaves them: a single-column btree serves it without a sort step), or their count. Each condition
        compares one top-level field with a parameter of the same kind (a date: epoch ms, and the stored value
        must be a date as FerretDB's `$s` records it; an integer: a stored number), so a value of another type
        never matches, as in MongoDB's comparison (jsonb orders strings and nulls below every number)."""
        if order not in ("asc", "desc"):
            raise StoreError(f"order must be asc or desc, not {order!r}", store="mongo")
        for f in (key, *(c.field for c in where), *fields):
            if "." in check_field(f):
                raise StoreError(f"keyset reads take top-level fields only, not {f!r}", store="mongo")
        parts: list[str] = []
        for n, c in enumerate(where, 1):
            parts.append(f"(_jsonb -> '{c.field}') {c.op} ${n}::jsonb")
            parts.append(f"_jsonb #>> '{{$s,p,{c.field},t}}' = 'date'" if isinstance(c.value, datetime)
                         else f"jsonb_typeof(_jsonb -> '{c.field}') = 'number'")
        if not any(c.field == key for c in where):  # the key itself: numbers or dates only (no nulls first)
            parts.append(f"jsonb_typeof(_jsonb -> '{key}') = 'number'")
        cond = f" WHERE {' AND '.join(dict.fromkeys(parts))}" if parts else ""
        src = f"FROM {_ident(schema)}.{_ident(table)}{cond}"
        if count:
            return f"SELECT {COMMENT} count(*) {src}"
        direction = "DESC" if order == "desc" else "ASC"
        tail = f" LIMIT ${len(where) + 1}" if limit else ""
        return (f"SELECT {COMMENT} (_jsonb -> '{key}')::text AS v, _jsonb ->> '_id' AS id, "
                f"_jsonb #>> '{{$s,p,_id,t}}' AS id_t{_extra_sql(fields)} {src} "
                f"ORDER BY (_jsonb -> '{key}') {direction}{tail}")

    async def range(self, collection: str, key: str, where: Sequence[Cond] = (), *, order: str = "asc",
                    limit: int | None = None, fields: Sequence[str] = ()) -> list[Position]:
        """Positions (`key` value, `_id`, and the `fields` asked for) of the documents matching every condition,
        in `key` order: what FerretDB would answer to the same range find with that sort, served by a btree index
        whose leading column is `key` (a range and order FerretDB 1.24 applies in memory after a full scan)."""
        args: list[Any] = [_cond_arg(c) for c in where]
        if limit is not None:
            args.append(limit)
        rows = await self._fetch(collection, lambda table: self.range_sql(
            table, self.db_name, key, where, order=order, limit=limit is not None, fields=fields), args)
        if any(r["id_t"] != "string" for r in rows):
            raise NotServed(f"{collection}: an _id that is not a string", store="mongo")
        return self._positions(collection, key, rows, fields)

    async def count(self, collection: str, where: Sequence[Cond]) -> int:
        """How many documents match every condition (the range's index, no document decoded)."""
        if not where:
            raise StoreError("count needs a condition", store="mongo")
        return int(await self._fetch(collection, lambda table: self.range_sql(
            table, self.db_name, where[0].field, where, count=True), [_cond_arg(c) for c in where], value=True))

    async def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of these string `_id`s the collection holds (one lookup on the `_id` index, for any number of
        ids: the `$in` FerretDB 1.24 answers by reading the whole collection)."""
        if not ids:
            return set()
        rows = await self._fetch(collection, lambda table: (
            f"SELECT {COMMENT} _jsonb ->> '_id' AS id FROM {_ident(self.db_name)}.{_ident(table)} "
            "WHERE (_jsonb -> '_id') = ANY($1::jsonb[])"), [[json.dumps(i) for i in ids]])
        return {str(r["id"]) for r in rows}

    async def explain_range(self, collection: str, key: str, where: Sequence[Cond] = (), *, order: str = "asc",
                            limit: int | None = None) -> dict[str, Any]:
        """PostgreSQL's JSON plan of `range` (index names in it show which index serves it)."""
        args: list[Any] = [_cond_arg(c) for c in where] + ([limit] if limit is not None else [])
        plan = await self._fetch(collection, lambda table: "EXPLAIN (FORMAT JSON) " + self.range_sql(
            table, self.db_name, key, where, order=order, limit=limit is not None), args, value=True)
        return json.loads(plan)[0]

    async def explain(self, collection: str, sort_field: str, *, eq: dict[str, Any] | None = None,
                      after: Position | None = None, limit: int = 21) -> dict[str, Any]:
        """PostgreSQL's JSON plan of one page query (index names in it show which index serves it)."""
        eq = eq or {}
        args = _page_args(eq, after, limit)
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            table = await self._table(conn, collection)
            sql = self.page_sql(table, self.db_name, sort_field, list(eq), after is not None)
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        return json.loads(plan)[0]

    async def documents(self, collection: str, *, batch: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every document of a collection as FerretDB stores it, read from its table: strings and numbers as
        they are, dates as epoch milliseconds, an ObjectId `_id` back as an ObjectId (the `$s` type entry is
        dropped). For whole-collection scans, which FerretDB itself serves by decoding each document (about
        1 ms each); the values are what a raw scan needs, not a faithful copy of every BSON type.

        Pages in `_id` order on the table's unique `_id` index, each its own statement: nothing is held open
        while the caller works through a page (a slow consumer would otherwise hit the role's idle-in-transaction
        timeout). MissingTable: the collection does not exist."""
        last: str | None = None
        while True:
            pool = await self._get_pool()
            try:
                async with pool.acquire() as conn:
                    table = f"{_ident(self.db_name)}.{_ident(await self._table(conn, collection))}"
                    if last is None:
                        rows = await conn.fetch(f"{COMMENT} SELECT _jsonb::text, _jsonb -> '_id' FROM {table} "
                                                "ORDER BY _jsonb -> '_id' LIMIT $1", batch)
                    else:
                        rows = await conn.fetch(f"{COMMENT} SELECT _jsonb::text, _jsonb -> '_id' FROM {table} "
                                                "WHERE _jsonb -> '_id' > $1::jsonb ORDER BY _jsonb -> '_id' "
                                                "LIMIT $2", last, batch)
            except asyncpg.UndefinedTableError:
                self._tables.pop(collection, None)  # dropped meanwhile (or made again under a new name)
                raise MissingTable(f"no collection {collection!r}", store="mongo") from None
            except StoreError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                    asyncpg.QueryCanceledError) as exc:
                raise StoreUnavailable(f"FerretDB's PostgreSQL did not answer ({type(exc).__name__})",
                                       store="mongo") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"reading {collection} refused ({type(exc).__name__})", store="mongo") from exc
            for text, _ in rows:
                doc = json.loads(text)
                schema = doc.pop("$s", None) or {}
                if ((schema.get("p") or {}).get("_id") or {}).get("t") == "objectId":
                    doc["_id"] = ObjectId(doc["_id"])
                yield doc
            if len(rows) < batch:
                return
            last = rows[-1][1]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def delete_in_range(coll: Any, keyset: BackendKeyset, key: str, where: Sequence[Cond], flt: dict[str, Any],
                          *, chunk: int = 1_000) -> int:
    """Delete the documents of `coll` matching `where` (found `chunk` at a time on `key`'s btree index), each by
    its `_id` with `flt` (the same condition as a find) checked again: FerretDB 1.24 answers a `delete_many` by a
    range by reading the whole collection. Stops when a round deletes nothing (only documents that stopped
    matching meanwhile are left). MissingTable / NotServed: the caller deletes by the find."""
    deleted = 0
    while ids := [p.id for p in await keyset.range(coll.name, key, where, limit=chunk)]:
        before = deleted
        for i in ids:
            deleted += (await coll.delete_one({"_id": {"$eq": i}, **flt})).deleted_count
        if len(ids) < chunk or deleted == before:
            break
    return deleted


#: The keyset of each (client, database name) a MongoStore made: code handed only the database (the outbox,
#: the retention job, the monitoring) finds its store's keyset here.
_BY_CLIENT: weakref.WeakKeyDictionary[Any, dict[str, BackendKeyset]] = weakref.WeakKeyDictionary()


def register_keyset(client: Any, keyset: BackendKeyset) -> None:
    _BY_CLIENT.setdefault(client, {})[keyset.db_name] = keyset


def keyset_of(db: Any) -> BackendKeyset | None:
    """The keyset registered for this database's client and name (None: no FerretDB backend known)."""
    return _BY_CLIENT.get(db.client, {}).get(db.name)
