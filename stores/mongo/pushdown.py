"""PostgreSQL-side indexes for the filters FerretDB pushes down (its PostgreSQL backend).

FerretDB 1.24 keeps each collection as a table of one `_jsonb` column and pushes a top-level equality on a
scalar (`{f: v}` or `{f: {"$eq": v}}`) down to SQL as `(_jsonb -> 'f') @> '<v as JSON>'`; ranges, `$in`,
`$or`/`$and`, dotted paths and sorts are applied in memory on what the SQL returned. The btree expression
indexes it builds for our Mongo indexes cannot serve `@>`, so without help every read is a sequential scan
that de-TOASTs every document. For each field a collection's repositories filter on by equality
(`CollectionSpec.pushdown`) this module creates a GIN `jsonb_path_ops` index on `(_jsonb -> 'f')`, the one
index shape that serves `@>`, on FerretDB's table, CONCURRENTLY (reads and writes go on while it builds).

FerretDB runs its queries as cached prepared statements whose key is itself a parameter (`_jsonb->$1 @> $2`).
A generic plan of such a statement cannot use any expression index, and PostgreSQL switches a statement to its
generic plan once that looks no dearer than the custom ones (always so while the table had no index, and it then
sticks on that connection). So the database FerretDB uses gets `plan_cache_mode = force_custom_plan`: every
execution is planned with its values, and uses the index (`explain`, planned afresh, would not show the
difference). The setting reaches FerretDB's connections opened afterwards.

For each field a collection's background jobs read by range or order without a declared index leading with it
(`CollectionSpec.ranges`) it also creates a btree on `(_jsonb -> 'f')`, CONCURRENTLY as well: the shape
`stores.mongo.backend_keyset.range` walks (a Mongo index would be built by FerretDB with a plain CREATE INDEX,
which holds the collection's writes for the whole build).

The capability is detected: on a real MongoDB (its own indexes serve the queries) or another FerretDB
backend nothing is done, and the report says why.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from stores.errors import StoreConfigError, StoreError, StoreUnavailable
from stores.mongo.collections import SPECS, CollectionSpec
from stores.mongo.safety import check_field
from stores.postgres.bulk_load import direct_connection

#: Suffix of every index this module owns (an index of ours no longer declared is dropped by that suffix).
SUFFIX = "_pd"
METADATA_TABLE = "_ferretdb_database_metadata"
#: Session default of FerretDB's database: plan every execution with its values (see the module docstring).
PLAN_CACHE_MODE = "force_custom_plan"


class Backend(StrEnum):
    MONGODB = "mongodb"
    FERRETDB_POSTGRESQL = "ferretdb-postgresql"
    FERRETDB_OTHER = "ferretdb-other"


@dataclass
class PushdownRow:
    collection: str
    field: str
    index: str
    status: str  # created | present | rebuilt (an invalid, half-built one replaced) | dropped (no longer declared)
    seconds: float = 0.0
    size_bytes: int = 0


@dataclass
class PushdownReport:
    backend: Backend
    rows: list[PushdownRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def created(self) -> list[PushdownRow]:
        return [r for r in self.rows if r.status in ("created", "rebuilt")]


async def detect_backend(db: AsyncDatabase) -> Backend:
    """MongoDB itself, FerretDB on PostgreSQL (its `explain` answers with PostgreSQL's plan), or another
    FerretDB backend."""
    try:
        info = await db.command("buildInfo")
        if "ferretdbVersion" not in info:
            return Backend.MONGODB
        names = sorted(await db.list_collection_names())
        if not names:
            return Backend.FERRETDB_OTHER  # nothing to explain against; nothing to index either
        plan = await db.command({"explain": {"find": names[0], "filter": {"_id": {"$eq": ""}}}})
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB: could not read the server's capabilities ({type(exc).__name__})",
                               store="mongo") from exc
    planner = plan.get("queryPlanner") or {}
    return Backend.FERRETDB_POSTGRESQL if isinstance(planner.get("Plan"), dict) else Backend.FERRETDB_OTHER


def index_name(table: str, fld: str) -> str:
    """`<table>_<field>_pd`, within PostgreSQL's 63-byte identifiers (hashed when too long)."""
    safe = "".join(c if c.isalnum() else "_" for c in fld.lower())
    name = f"{table}_{safe}{SUFFIX}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(f"{table}\x00{fld}".encode()).hexdigest()[:8]
    return f"{table[:40]}_{safe[:10]}_{digest}{SUFFIX}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def range_index_name(table: str, fld: str) -> str:
    """`<table>_<field>_range_pd`: the btree of a `ranges` field."""
    return index_name(table, f"{fld}:range")


def index_sql(schema: str, table: str, fld: str, *, concurrently: bool = True, btree: bool = False) -> str:
    """The statement that creates the pushdown index of one field (`fld` is a code-chosen field name), or with
    `btree` the range index of a `ranges` field."""
    check_field(fld)
    how = "CONCURRENTLY " if concurrently else ""
    name = range_index_name(table, fld) if btree else index_name(table, fld)
    shape = f"btree ((_jsonb -> {_literal(fld)}))" if btree else f"gin ((_jsonb -> {_literal(fld)}) jsonb_path_ops)"
    return f"CREATE INDEX {how}IF NOT EXISTS {_ident(name)} ON {_ident(schema)}.{_ident(table)} USING {shape}"


class PushdownIndexer:
    """Creates (and drops, when no longer declared) the pushdown indexes of one credit-store database."""

    def __init__(self, db: AsyncDatabase, backend_url: str | None, *,
                 specs: Iterable[CollectionSpec] = SPECS) -> None:
        self.db = db
        self.backend_url = backend_url
        self.specs = tuple(specs)

    async def ensure(self) -> PushdownReport:
        """Every declared index present and valid; idempotent. Nothing is done off FerretDB-on-PostgreSQL."""
        backend = await detect_backend(self.db)
        report = PushdownReport(backend)
        if backend is Backend.MONGODB:
            report.notes.append("MongoDB serves equality filters from its own indexes: no pushdown indexes needed")
            return report
        if backend is Backend.FERRETDB_OTHER:
            report.notes.append("FerretDB without the PostgreSQL backend (or with no collection yet): "
                                "no pushdown indexes")
            return report
        if not self.backend_url:
            report.notes.append("FerretDB on PostgreSQL, but KREDETE_FERRETDB_POSTGRES_URL (the database it keeps "
                                "its data in) is not set: pushdown indexes not created")
            return report
        try:
            async with direct_connection(self.backend_url) as conn:
                # Index builds on large tables outlast any default timeout; a bigger sort memory speeds them up.
                await conn.execute("SET statement_timeout = 0")
                await conn.execute("SET maintenance_work_mem = '256MB'")
                tables = await self._tables(conn)
                await self._custom_plans(conn, report)
                for spec in self.specs:
                    table = tables.get(spec.name)
                    if table is None:
                        continue
                    await self._ensure_table(conn, spec, table, report)
        except StoreError:
            raise
        except Exception as exc:  # driver errors: a safe message, without SQL or credentials
            raise StoreError(f"pushdown indexes: PostgreSQL refused ({type(exc).__name__})", store="mongo") from exc
        return report

    async def _tables(self, conn: Any) -> dict[str, str]:
        """Collection -> table of this database, from FerretDB's own metadata (schema = database name)."""
        schema = self.db.name
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{_ident(schema)}.{METADATA_TABLE}"):
            raise StoreConfigError(f"KREDETE_FERRETDB_POSTGRES_URL does not hold FerretDB database {schema!r} "
                                   "(no such schema): it must name the database FerretDB keeps its data in",
                                   store="mongo")
        rows = await conn.fetch(f"SELECT _jsonb->>'_id' AS coll, _jsonb->>'table' AS tbl "
                                f"FROM {_ident(schema)}.{METADATA_TABLE}")
        return {r["coll"]: r["tbl"] for r in rows}

    async def _custom_plans(self, conn: Any, report: PushdownReport) -> None:
        """`plan_cache_mode = force_custom_plan` as the database's session default (idempotent)."""
        current = await conn.fetchval(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = current_database() AND s.setrole = 0")
        if f"plan_cache_mode={PLAN_CACHE_MODE}" in (current or []):
            return
        dbname = await conn.fetchval("SELECT current_database()")
        try:
            await conn.execute(f"ALTER DATABASE {_ident(dbname)} SET plan_cache_mode = {PLAN_CACHE_MODE}")
        except Exception as exc:  # not the database's owner: the indexes still help explain-planned reads only
            report.notes.append(f"could not set plan_cache_mode = {PLAN_CACHE_MODE} on FerretDB's database "
                                f"({type(exc).__name__}): FerretDB's cached statements may keep sequential scans; "
                                "have its owner set it")
            return
        report.notes.append(f"set plan_cache_mode = {PLAN_CACHE_MODE} on FerretDB's database: FerretDB's "
                            "connections opened from now on plan each read with its values; restart FerretDB "
                            "if it was already serving reads")

    async def _ensure_table(self, conn: Any, spec: CollectionSpec, table: str, report: PushdownReport) -> None:
        schema = self.db.name
        existing = {r["name"]: r["valid"] for r in await conn.fetch(
            "SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND t.relname = $2",
            schema, table)}
        wanted = {index_name(table, f): (f, False) for f in spec.pushdown}
        wanted |= {range_index_name(table, f): (f, True) for f in spec.ranges}
        changed = False
        for name, (fld, btree) in wanted.items():
            status = "present"
            t0 = time.perf_counter()
            if existing.get(name) is False:
                # A CONCURRENTLY build that failed half-way leaves an invalid index that serves nothing.
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_ident(schema)}.{_ident(name)}")
                status = "rebuilt"
            if name not in existing or status == "rebuilt":
                await conn.execute(index_sql(schema, table, fld, btree=btree))
                status = "created" if status == "present" else status
                changed = True
            size = await conn.fetchval("SELECT pg_relation_size(to_regclass($1))", f"{_ident(schema)}.{_ident(name)}")
            report.rows.append(PushdownRow(spec.name, f"{fld} (range)" if btree else fld, name, status,
                                           round(time.perf_counter() - t0, 3),
                                           int(size or 0)))
        for name in existing:
            if name.endswith(SUFFIX) and name not in wanted:
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_ident(schema)}.{_ident(name)}")
                report.rows.append(PushdownRow(spec.name, "?", name, "dropped"))
        if changed:
            # Statistics of the new index expressions, so the planner prices the index scan right at once.
            await conn.execute(f"ANALYZE {_ident(schema)}.{_ident(table)}")


async def ensure_pushdown_indexes(db: AsyncDatabase, backend_url: str | None) -> PushdownReport:
    """Module-level shortcut of `PushdownIndexer(db, backend_url).ensure()`."""
    return await PushdownIndexer(db, backend_url).ensure()


async def explain_find(db: AsyncDatabase, collection: str, flt: dict[str, Any], *,
                       sort: dict[str, int] | None = None, limit: int = 0) -> dict[str, Any]:
    """The server's `explain` of a find (FerretDB: its pushdown flags and PostgreSQL's plan)."""
    cmd: dict[str, Any] = {"find": collection, "filter": flt}
    if sort:
        cmd["sort"] = sort
    if limit:
        cmd["limit"] = limit
    try:
        return await db.command({"explain": cmd})
    except OperationFailure as exc:
        raise StoreError(f"explain on {collection} refused (code {exc.code})", store="mongo") from exc


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a PostgreSQL JSON plan (depth first)."""
    out = [plan]
    for child in plan.get("Plans") or ():
        out += plan_nodes(child)
    return out


def index_scans(explain: dict[str, Any]) -> list[str]:
    """Names of the indexes a FerretDB explain's PostgreSQL plan scans (empty: sequential scan)."""
    root = (explain.get("queryPlanner") or {}).get("Plan") or {}
    return [n["Index Name"] for n in plan_nodes(root) if n.get("Index Name")]
