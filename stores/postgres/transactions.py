"""Transactions and their ledger postings: scoped search with keyset pages, detail, and the writes
the payment service makes inside its own database transaction."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from stores.errors import InvalidData, NotFound
from stores.postgres.base import Params, Repository, cap_limit, scope_clause
from stores.postgres.cursors import decode_position, encode_position, query_digest
from stores.postgres.errors import pg_errors
from stores.postgres.models import (
    COUNTERPARTY_TYPES,
    TRANSACTION_STATUSES,
    CounterpartyType,
    LedgerEntry,
    Page,
    RefundSummary,
    TransactionDetail,
    TransactionStatus,
    TransactionSummary,
    kinds_with_counterparty,
)
from stores.scope import RowScope

_CORRIDOR = re.compile(r"^[A-Z]{2}-[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3,4}$")
#: A platform reference (KRD- and 12 of [0-9A-Z], as the table's CHECK says) or a start of one.
REFERENCE_LENGTH = 16
_REFERENCE_PREFIX = re.compile(r"^KRD-[0-9A-Z]{1,12}$")
#: Case- and whitespace-insensitive form of a name, in SQL (applied to the column and the argument alike).
_NORMALISED_NAME = "lower(btrim(regexp_replace({}, '\\s+', ' ', 'g')))"


def normalise_counterparty(text: str) -> str:
    """What the counterparty comparison ignores, in Python: surrounding whitespace, runs of it, case."""
    return " ".join(text.split()).lower()

SUMMARY_COLUMNS = ("t.id, t.created_at, t.user_id, t.kind, t.status, t.corridor_id, t.amount_minor, t.currency, "
                   "t.fee_minor, t.dest_amount_minor, t.dest_currency, t.reference, t.counterparty_name, "
                   "t.description")
DETAIL_COLUMNS = SUMMARY_COLUMNS + (", t.updated_at, t.wallet_id, t.fx_rate, t.fx_rate_observed_at, t.fx_order_id, "
                                    "t.payment_method_id, t.counterparty_reference, t.memo, t.failure_reason, "
                                    "t.completed_at")
#: The fields of a ledger line and of a refund, in the order DETAIL_WITH_LINES puts them in its records (enums as
#: their text: an anonymous record's fields come back without their type's codec).
_ENTRY_COLUMNS = ("line_no", "wallet_id", "currency", "direction::text", "amount_minor", "entry_type")
_REFUND_COLUMNS = ("id", "amount_minor", "currency", "status::text", "reason", "created_at", "refund_transaction_id")
ENTRY_FIELDS = tuple(c.removesuffix("::text") for c in _ENTRY_COLUMNS)
REFUND_FIELDS = tuple(c.removesuffix("::text") for c in _REFUND_COLUMNS)
#: A transaction's detail with its ledger lines and refunds in one statement (one round trip, not three): each an
#: array of records in binary, so every value keeps its type; `t` is the transaction.
DETAIL_WITH_LINES = (
    f"{DETAIL_COLUMNS}, "
    f"ARRAY(SELECT ({', '.join('e.' + c for c in _ENTRY_COLUMNS)}) "
    "FROM ledger_entries e WHERE e.transaction_id = t.id AND e.created_at = t.created_at ORDER BY e.line_no) "
    "AS entries, "
    f"ARRAY(SELECT ({', '.join('r.' + c for c in _REFUND_COLUMNS)}) "
    "FROM refunds r WHERE r.transaction_id = t.id ORDER BY r.created_at, r.id) AS refunds")


def escape_like(text: str) -> str:
    """Literal text for ILIKE ... ESCAPE '\\': the user's % and _ match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _digest(scope: RowScope, filters: dict[str, object]) -> str:
    ids = scope.sql_ids()
    return query_digest("*" if ids is None else [str(i) for i in ids], filters)


def encode_cursor(created_at: datetime, id_: UUID, digest: str) -> str:
    return encode_position({"c": created_at.isoformat(), "i": str(id_)}, digest)


def decode_cursor(cursor: str, digest: str) -> tuple[datetime, UUID]:
    """Position of a cursor made by the same query. It carries a position only: the scope always comes
    from the caller's RowScope, so a forged cursor cannot widen what is visible."""
    data = decode_position(cursor, digest)
    try:
        return datetime.fromisoformat(data["c"]), UUID(data["i"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidData("malformed cursor", store="postgres") from exc


@dataclass(frozen=True)
class NewTransaction:
    """A transaction row as the payment service writes it."""

    id: UUID
    created_at: datetime
    user_id: UUID
    kind: str
    status: str
    wallet_id: UUID
    amount_minor: int
    currency: str
    reference: str
    fee_minor: int = 0
    corridor_id: str | None = None
    dest_amount_minor: int | None = None
    dest_currency: str | None = None
    fx_rate: Decimal | None = None
    fx_rate_observed_at: datetime | None = None
    fx_order_id: UUID | None = None
    payment_method_id: UUID | None = None
    counterparty_name: str | None = None
    counterparty_reference: str | None = None
    description: str | None = None
    memo: str | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Posting:
    """One ledger line: positive amount, debit or credit, on a wallet holding the currency."""

    wallet_id: UUID
    currency: str
    direction: str
    amount_minor: int
    entry_type: str = "principal"


_TX_COLUMNS = ("id", "created_at", "updated_at", "user_id", "kind", "status", "corridor_id", "wallet_id",
               "amount_minor", "currency", "fee_minor", "dest_amount_minor", "dest_currency", "fx_rate",
               "fx_rate_observed_at", "fx_order_id", "payment_method_id", "reference", "counterparty_name",
               "counterparty_reference", "description", "memo", "completed_at")


class TransactionRepository(Repository):
    async def search(self, scope: RowScope, *, date_from: datetime | None = None, date_to: datetime | None = None,
                     status: TransactionStatus | None = None, corridor: str | None = None,
                     min_amount_minor: int | None = None, max_amount_minor: int | None = None,
                     currency: str | None = None, reference: str | None = None, counterparty: str | None = None,
                     counterparty_types: Collection[CounterpartyType] = (),
                     cursor: str | None = None, limit: int = 50) -> Page[TransactionSummary]:
        """Newest first, keyset-paged on (created_at, id); every filter and the scope run in SQL.

        Only values the caller can see are filterable. `reference` is the platform reference (KRD-...), matched
        exactly or as a prefix. `counterparty` is an exact match of the counterparty name, compared case- and
        whitespace-insensitively, and only on transactions whose counterparty type is in `counterparty_types`
        (the types whose names the caller sees, which the guards decide: `guards.access`; none given, no name
        matches). The counterparty's account reference is never searched.
        """
        if status is not None and status not in TRANSACTION_STATUSES:
            raise InvalidData("unknown transaction status", store="postgres")
        if corridor is not None and not _CORRIDOR.match(corridor):
            raise InvalidData("corridor must look like 'US-NG'", store="postgres")
        if currency is not None and not _CURRENCY.match(currency):
            raise InvalidData("currency must be an ISO-style code such as 'NGN' or 'USDC'", store="postgres")
        if reference is not None and not _REFERENCE_PREFIX.match(reference):
            raise InvalidData("reference must be a platform reference such as KRD-7Q2M4XK9ABCD, or its start",
                              store="postgres")
        if counterparty is not None and not (1 <= len(normalise_counterparty(counterparty)) <= 200):
            raise InvalidData("counterparty must be 1 to 200 characters besides spaces", store="postgres")
        types = sorted(set(counterparty_types))
        if not set(types) <= set(COUNTERPARTY_TYPES.values()):
            raise InvalidData("unknown counterparty type", store="postgres")
        limit = cap_limit(limit)
        filters = {"from": date_from, "to": date_to, "status": status, "corridor": corridor,
                   "min": min_amount_minor, "max": max_amount_minor, "currency": currency, "ref": reference,
                   "cp": None if counterparty is None else normalise_counterparty(counterparty),
                   "cpt": types if counterparty is not None else None}
        digest = _digest(scope, filters)

        p = Params()
        where = [scope_clause(scope, "t.user_id", p)]
        if date_from is not None:
            where.append(f"t.created_at >= {p.add(date_from)}")
        if date_to is not None:
            where.append(f"t.created_at < {p.add(date_to)}")
        if status is not None:
            where.append(f"t.status = {p.add(status)}::transaction_status")
        if corridor is not None:
            where.append(f"t.corridor_id = {p.add(corridor)}")
        if min_amount_minor is not None:
            where.append(f"t.amount_minor >= {p.add(int(min_amount_minor))}")
        if max_amount_minor is not None:
            where.append(f"t.amount_minor <= {p.add(int(max_amount_minor))}")
        if currency is not None:
            where.append(f"t.currency = {p.add(currency)}")
        if reference is not None:
            if len(reference) == REFERENCE_LENGTH:
                where.append(f"t.reference = {p.add(reference)}")
            else:  # only [0-9A-Z-] (checked above): nothing to escape; the C collation lets the index serve it
                where.append(f"t.reference LIKE {p.add(reference + '%')}")
        if counterparty is not None:
            # Both sides normalised by the same SQL expression: equal, never "contains" or "starts with".
            where.append(f"{_NORMALISED_NAME.format('t.counterparty_name')} = "
                         f"{_NORMALISED_NAME.format(p.add(counterparty, 'text'))}")
            where.append(f"t.kind = ANY({p.add(list(kinds_with_counterparty(*types)), 'transaction_kind[]')})")
        if cursor is not None:
            c_at, c_id = decode_cursor(cursor, digest)
            where.append(f"(t.created_at, t.id) < ({p.add(c_at)}::timestamptz, {p.add(c_id)}::uuid)")
        query = (f"SELECT {SUMMARY_COLUMNS} FROM transactions t WHERE {' AND '.join(where)} "
                 f"ORDER BY t.created_at DESC, t.id DESC LIMIT {p.add(limit + 1)}")
        async with self._read() as conn:
            rows = await conn.fetch(query, *p.values)
        items = [TransactionSummary.model_validate(dict(r)) for r in rows[:limit]]
        cursors = [encode_cursor(t.created_at, t.id, digest) for t in items]
        return Page[TransactionSummary](items=items, next_cursor=cursors[-1] if len(rows) > limit else None,
                                        item_cursors=cursors)

    async def get(self, scope: RowScope, transaction_id: UUID, *, created_at: datetime | None = None,
                  ) -> TransactionDetail:
        """One transaction with its ledger entries and refunds; NotFound when missing or out of scope.

        Give `created_at` when known: the partition key lets the query read one partition instead of
        probing every month's index."""
        p = Params()
        where = f"t.id = {p.add(transaction_id, 'uuid')} AND {scope_clause(scope, 't.user_id', p)}"
        if created_at is not None:
            where += f" AND t.created_at = {p.add(created_at, 'timestamptz')}"
        async with self._read() as conn:
            row = await conn.fetchrow(f"SELECT {DETAIL_WITH_LINES} FROM transactions t WHERE {where}", *p.values)
        if row is None:
            raise NotFound("transaction not found", store="postgres")
        detail = dict(row)
        detail["entries"] = [LedgerEntry.model_validate(dict(zip(ENTRY_FIELDS, e, strict=True)))
                             for e in row["entries"]]
        detail["refunds"] = [RefundSummary.model_validate(dict(zip(REFUND_FIELDS, r, strict=True)))
                             for r in row["refunds"]]
        return TransactionDetail.model_validate(detail)

    async def get_many(self, scope: RowScope, transaction_ids: Sequence[UUID]) -> list[TransactionSummary]:
        """Batch read by id (at most 100), in scope; missing or hidden ids are simply absent."""
        ids = list(dict.fromkeys(transaction_ids))[:100]
        p = Params()
        where = f"t.id = ANY({p.add(ids, 'uuid[]')}) AND {scope_clause(scope, 't.user_id', p)}"
        async with self._read() as conn:
            rows = await conn.fetch(f"SELECT {SUMMARY_COLUMNS} FROM transactions t WHERE {where} "
                                    "ORDER BY t.created_at DESC, t.id DESC", *p.values)
        return [TransactionSummary.model_validate(dict(r)) for r in rows]

    async def by_reference(self, scope: RowScope, reference: str) -> TransactionSummary:
        p = Params()
        where = f"t.reference = {p.add(reference)} AND {scope_clause(scope, 't.user_id', p)}"
        async with self._read() as conn:
            row = await conn.fetchrow(f"SELECT {SUMMARY_COLUMNS} FROM transactions t WHERE {where} LIMIT 1",
                                      *p.values)
        if row is None:
            raise NotFound("transaction not found", store="postgres")
        return TransactionSummary.model_validate(dict(row))

    # --- writes: the caller owns the database transaction (one per business operation) ---

    @staticmethod
    async def insert(conn: asyncpg.Connection, tx: NewTransaction) -> None:
        values = [getattr(tx, c) if c != "updated_at" else tx.created_at for c in _TX_COLUMNS]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        with pg_errors():
            await conn.execute(f"INSERT INTO transactions ({', '.join(_TX_COLUMNS)}) VALUES ({placeholders})",
                               *values)

    @staticmethod
    async def post(conn: asyncpg.Connection, transaction_id: UUID, created_at: datetime,
                   postings: Sequence[Posting]) -> None:
        """All lines of a posting in one statement (the balance is checked at COMMIT by the database)."""
        with pg_errors():
            await conn.execute(
                "INSERT INTO ledger_entries (transaction_id, created_at, line_no, wallet_id, currency, direction, "
                "amount_minor, entry_type) SELECT $1, $2, n, w, c, d::ledger_direction, a, e "
                "FROM unnest($3::smallint[], $4::uuid[], $5::text[], $6::text[], $7::bigint[], $8::text[]) "
                "AS u(n, w, c, d, a, e)",
                transaction_id, created_at, list(range(1, len(postings) + 1)), [x.wallet_id for x in postings],
                [x.currency for x in postings], [x.direction for x in postings],
                [x.amount_minor for x in postings], [x.entry_type for x in postings])

    @staticmethod
    async def lock(conn: asyncpg.Connection, transaction_id: UUID, user_id: UUID | None = None, *,
                   created_at: datetime | None = None) -> asyncpg.Record:
        """The row, locked for update, optionally only if it belongs to `user_id`; `created_at` (when known)
        confines the lookup to one partition."""
        p = Params()
        where = f"t.id = {p.add(transaction_id, 'uuid')}"
        if user_id is not None:
            where += f" AND t.user_id = {p.add(user_id, 'uuid')}"
        if created_at is not None:
            # Spelled into the SQL, not "$n IS NULL OR ...", so even a generic plan prunes partitions.
            where += f" AND t.created_at = {p.add(created_at, 'timestamptz')}"
        with pg_errors():
            row = await conn.fetchrow(f"SELECT {DETAIL_COLUMNS} FROM transactions t WHERE {where} FOR UPDATE",
                                      *p.values)
        if row is None:
            raise NotFound("transaction not found", store="postgres")
        return row

    @staticmethod
    async def set_status(conn: asyncpg.Connection, transaction_id: UUID, created_at: datetime, status: str, *,
                         failure_reason: str | None = None) -> None:
        with pg_errors():
            await conn.execute(
                "UPDATE transactions SET status = $3::transaction_status, updated_at = now(), "
                "failure_reason = COALESCE($4, failure_reason), "
                "completed_at = CASE WHEN $3 IN ('completed', 'reversed') THEN COALESCE(completed_at, now()) "
                "ELSE completed_at END WHERE id = $1 AND created_at = $2",
                transaction_id, created_at, status, failure_reason)
