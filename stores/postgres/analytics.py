"""Aggregations and time series (no row-level PII): corridor volumes for risk, daily wallet volumes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import Field, TypeAdapter

from stores.errors import InvalidData
from stores.postgres.base import Params, Repository, scope_clause
from stores.postgres.cursors import decode_position, encode_position, query_digest
from stores.postgres.models import (
    TRANSACTION_STATUSES,
    CorridorVolume,
    Granularity,
    Series,
    TransactionStatus,
    WalletDayVolume,
)
from stores.scope import RowScope

_GRANULARITIES = ("hour", "day", "week", "month")
#: A page of cells validated in one call (pydantic-core's loop), not one `model_validate` per row.
_CELLS = TypeAdapter(list[CorridorVolume])
_CELL_FIELDS = tuple(CorridorVolume.model_fields)
#: A time series never has more buckets than this (e.g. 400 days, 2 years of weeks).
MAX_BUCKETS = 1000
#: Row caps of the aggregate queries (one row per bucket and group); a capped result says `truncated`.
CORRIDOR_ROWS = MAX_BUCKETS * 50
#: Smallest aggregate cell shown (transactions and distinct users); the MCP tool passes Settings' value.
DEFAULT_MIN_CELL_SIZE = 5
WALLET_DAY_ROWS = MAX_BUCKETS * 10


def _cap(max_rows: int, ceiling: int) -> int:
    return max(1, min(int(max_rows), ceiling))


def _check_range(date_from: datetime, date_to: datetime) -> None:
    if date_to <= date_from:
        raise InvalidData("date_to must be after date_from", store="postgres")




def _cell_key(alias: str = "") -> str:
    """Keyset order of corridor cells; an absent `dest_currency` sorts as '' (NULLs do not compare)."""
    return f"{alias}bucket, {alias}corridor_id, {alias}currency, COALESCE({alias}dest_currency, '')"


class CorridorPage(Series[CorridorVolume]):
    """Shown corridor cells of one page, in `_cell_key` order; `truncated` says more follow (`next_cursor`).
    `suppressed_cells` and `shown_cells` count the whole window, whatever the page, so paging says nothing
    finer about the withheld cells than one unpaged answer does."""

    next_cursor: str | None = None
    #: Cells shown in the whole window (every page), not only on this one.
    shown_cells: int = 0
    #: The query's digest the cursors are bound to (cursors inside the page are made only when asked for: the
    #: output budget, which alone asks, does not cut a page of the default size).
    digest: str = Field("", exclude=True, repr=False)

    def cursor_after(self, index: int) -> str | None:
        """Cursor resuming after `items[index]`; for the last item, `next_cursor` (None when nothing follows)."""
        if index == len(self.items) - 1:
            return self.next_cursor
        return _cell_cursor(self.items[index], self.digest) if 0 <= index < len(self.items) else None


def _cell_cursor(cell: CorridorVolume, digest: str) -> str:
    return encode_position({"b": cell.bucket.isoformat(), "c": cell.corridor_id, "f": cell.currency,
                            "t": cell.dest_currency or ""}, digest)


def _cell_position(cursor: str, digest: str) -> tuple[datetime, str, str, str]:
    data = decode_position(cursor, digest)
    try:
        position = datetime.fromisoformat(data["b"]), data["c"], data["f"], data["t"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidData("malformed cursor", store="postgres") from exc
    if not all(isinstance(v, str) for v in position[1:]):
        raise InvalidData("malformed cursor", store="postgres")
    return position


class AnalyticsRepository(Repository):
    async def volume_by_corridor(self, date_from: datetime, date_to: datetime, granularity: Granularity = "day", *,
                                 status: TransactionStatus = "completed", corridor: str | None = None,
                                 min_cell_size: int = DEFAULT_MIN_CELL_SIZE, closed_buckets_only: bool = True,
                                 max_rows: int = CORRIDOR_ROWS, from_rollup: bool = True,
                                 cursor: str | None = None) -> CorridorPage:
        """Count and sums per (bucket, corridor, currency pair) of remittances in [date_from, date_to), a page
        of at most `max_rows` rows in (bucket, corridor, currency, dest currency) order: `truncated` says when
        more follow, and `next_cursor` (bound to these arguments) resumes after the last row.

        Small cells are withheld: a group is returned only with at least `min_cell_size` transactions from at
        least `min_cell_size` distinct users (a smaller one points at a person's own payments); the number of
        withheld groups in the whole window (not the page) is `suppressed_cells`. Nothing else about them
        (counts, sums) is returned: totals of the withheld groups could be differenced out of two queries with
        overlapping ranges.

        So that two queries cannot be differenced down to one payment either, cells are whole buckets: the range
        is widened to bucket boundaries (UTC), and with `closed_buckets_only` the bucket still filling up (the
        current hour/day/...) is left out, since polling it would reveal each new payment.

        Daily cells of completed remittances (what `corridor_volume` asks) come from the `corridor_days` rollup,
        the same numbers at a cost that does not grow with the volume; `from_rollup=False` sums `transactions`
        instead (the reference the rollup is tested against).
        """
        query, values, cap = self.corridor_query(date_from, date_to, granularity, status=status, corridor=corridor,
                                                 min_cell_size=min_cell_size,
                                                 closed_buckets_only=closed_buckets_only, max_rows=max_rows,
                                                 from_rollup=from_rollup, cursor=cursor)
        digest = self._corridor_digest(date_from, date_to, granularity, status, corridor, min_cell_size,
                                       closed_buckets_only, from_rollup)
        async with self._read() as conn:
            rows = await conn.fetch(query, *values)
        suppressed = int(rows[0]["suppressed"]) if rows else 0
        shown_total = int(rows[0]["shown"]) if rows else 0
        found = [r for r in rows if r["bucket"] is not None]
        items = _CELLS.validate_python([{k_: r[k_] for k_ in _CELL_FIELDS} for r in found[:cap]])
        more = len(found) > cap
        return CorridorPage(items=items, truncated=more, suppressed_cells=suppressed, shown_cells=shown_total,
                            next_cursor=_cell_cursor(items[-1], digest) if more and items else None, digest=digest)

    @staticmethod
    def _corridor_digest(date_from: datetime, date_to: datetime, granularity: str, status: str,
                         corridor: str | None, min_cell_size: int, closed_buckets_only: bool,
                         from_rollup: bool) -> str:
        """What a corridor cursor is bound to: every argument but the page size. The aggregate scope is the
        minimum cell size (no row scope: aggregates are the same for every caller allowed them)."""
        return query_digest({"aggregates": min_cell_size},
                            {"from": date_from, "to": date_to, "g": granularity, "status": status,
                             "corridor": corridor, "closed": closed_buckets_only, "rollup": from_rollup})

    @classmethod
    def corridor_query(cls, date_from: datetime, date_to: datetime, granularity: Granularity = "day", *,
                       status: TransactionStatus = "completed", corridor: str | None = None,
                       min_cell_size: int = DEFAULT_MIN_CELL_SIZE, closed_buckets_only: bool = True,
                       max_rows: int = CORRIDOR_ROWS, from_rollup: bool = True,
                       cursor: str | None = None) -> tuple[str, list[Any], int]:
        """(SQL, its parameters, the row cap) of `volume_by_corridor` (also for EXPLAIN: bench/corridor_volume.py)."""
        if granularity not in _GRANULARITIES:
            raise InvalidData(f"granularity must be one of {', '.join(_GRANULARITIES)}", store="postgres")
        if status not in TRANSACTION_STATUSES:
            raise InvalidData("unknown transaction status", store="postgres")
        if not isinstance(min_cell_size, int) or not 1 <= min_cell_size <= 1000:
            raise InvalidData("min_cell_size must be 1 to 1000", store="postgres")
        _check_range(date_from, date_to)
        p = Params()
        g = p.add(granularity)
        step = f"('1 ' || {g})::interval"

        def floor(ts: str) -> str:  # bucket start, computed on UTC wall-clock time (month lengths, no DST)
            return f"(date_trunc({g}, ({ts}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"

        lower = floor(p.add(date_from, "timestamptz"))
        upper = (f"((date_trunc({g}, ({p.add(date_to, 'timestamptz')} AT TIME ZONE 'UTC') - interval '1 microsecond')"
                 f" + {step}) AT TIME ZONE 'UTC')")
        if closed_buckets_only:
            upper = f"LEAST({upper}, {floor('now()')})"
        if from_rollup and granularity == "day" and status == "completed":
            cells = cls._rollup_cells(lower, upper, corridor, p)
        else:
            cells = cls._scanned_cells(g, lower, upper, status, corridor, p)
        k = p.add(min_cell_size, "int")
        cap = _cap(max_rows, CORRIDOR_ROWS)
        after = ""
        if cursor is not None:
            digest = cls._corridor_digest(date_from, date_to, granularity, status, corridor, min_cell_size,
                                          closed_buckets_only, from_rollup)
            b, c, f, t = _cell_position(cursor, digest)
            after = (f" AND ({_cell_key()}) > ({p.add(b, 'timestamptz')}, {p.add(c, 'text')}, {p.add(f, 'text')}, "
                     f"{p.add(t, 'text')})")
        # One statement (one snapshot) for the page of shown cells and the window's counts of withheld and shown
        # cells (the same on every page); the LEFT JOIN keeps the counts when no cell is on the page.
        query = (f"WITH cells AS ({cells}), "
                 f"shown AS (SELECT * FROM cells WHERE transaction_count >= {k} AND users >= {k}{after} "
                 f"ORDER BY {_cell_key()} LIMIT {p.add(cap + 1)}) "
                 f"SELECT s.bucket, s.corridor_id, s.currency, s.dest_currency, s.transaction_count, s.amount_minor, "
                 f"s.fee_minor, s.dest_amount_minor, w.suppressed, w.shown FROM (SELECT count(*) FILTER (WHERE "
                 f"transaction_count < {k} OR users < {k}) AS suppressed, count(*) FILTER (WHERE "
                 f"transaction_count >= {k} AND users >= {k}) AS shown FROM cells) w LEFT JOIN shown s ON TRUE "
                 f"ORDER BY {_cell_key('s.')}")
        return query, p.values, cap

    @staticmethod
    def _scanned_cells(g: str, lower: str, upper: str, status: str, corridor: str | None, p: Params) -> str:
        """The cells summed from `transactions` (any granularity and status): cost grows with the window's rows."""
        where = [f"t.created_at >= {lower}", f"t.created_at < {upper}",
                 f"t.status = {p.add(status)}::transaction_status", "t.corridor_id IS NOT NULL"]
        if corridor is not None:
            where.append(f"t.corridor_id = {p.add(corridor)}")
        return (f"SELECT date_trunc({g}, t.created_at, 'UTC') AS bucket, t.corridor_id, t.currency, t.dest_currency, "
                "count(*) AS transaction_count, count(DISTINCT t.user_id) AS users, "
                "sum(t.amount_minor)::bigint AS amount_minor, sum(t.fee_minor)::bigint AS fee_minor, "
                "COALESCE(sum(t.dest_amount_minor), 0)::bigint AS dest_amount_minor "
                f"FROM transactions t WHERE {' AND '.join(where)} GROUP BY 1, 2, 3, 4")

    @staticmethod
    def _rollup_cells(lower: str, upper: str, corridor: str | None, p: Params) -> str:
        """The same cells for whole UTC days of completed remittances, read from the `corridor_days` rollup
        (migration 0015, kept by triggers in each writer's transaction): one row per cell, whatever the volume.
        A cell's distinct users are that day's, as the scan counts them. `lower`/`upper` are day boundaries, so
        a bucket lies in the range exactly when its payments do."""
        where = [f"c.bucket >= {lower}", f"c.bucket < {upper}", "c.transactions > 0"]
        if corridor is not None:
            where.append(f"c.corridor_id = {p.add(corridor)}")
        return ("SELECT c.bucket, c.corridor_id, c.currency, NULLIF(c.dest_currency, '') AS dest_currency, "
                "c.transactions AS transaction_count, c.users, c.amount_minor, c.fee_minor, c.dest_amount_minor "
                f"FROM corridor_days c WHERE {' AND '.join(where)}")

    async def wallet_daily_volume(self, scope: RowScope, *, date_from: datetime, date_to: datetime,
                                  user_id: UUID | None = None, wallet_id: UUID | None = None,
                                  max_rows: int = WALLET_DAY_ROWS) -> Series[WalletDayVolume]:
        """Per wallet and UTC day: entry count, credits and debits, from the ledger (in scope only), at most
        `max_rows` rows (`truncated` says when there were more)."""
        _check_range(date_from, date_to)
        if (date_to - date_from).days > MAX_BUCKETS:
            raise InvalidData(f"at most {MAX_BUCKETS} days per query", store="postgres")
        p = Params()
        where = [f"e.created_at >= {p.add(date_from)}", f"e.created_at < {p.add(date_to)}",
                 scope_clause(scope, "w.user_id", p), "w.kind = 'customer'"]
        if user_id is not None:
            where.append(f"w.user_id = {p.add(user_id, 'uuid')}")
        if wallet_id is not None:
            where.append(f"w.id = {p.add(wallet_id, 'uuid')}")
        if user_id is None and wallet_id is None:
            raise InvalidData("give a user_id or a wallet_id", store="postgres")
        query = ("SELECT (date_trunc('day', e.created_at, 'UTC') AT TIME ZONE 'UTC')::date AS day, e.wallet_id, "
                 "e.currency, count(*) AS entries, "
                 "COALESCE(sum(e.amount_minor) FILTER (WHERE e.direction = 'credit'), 0)::bigint AS credits_minor, "
                 "COALESCE(sum(e.amount_minor) FILTER (WHERE e.direction = 'debit'), 0)::bigint AS debits_minor "
                 f"FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id WHERE {' AND '.join(where)} "
                 f"GROUP BY 1, 2, 3 ORDER BY 1, 2 LIMIT {p.add(_cap(max_rows, WALLET_DAY_ROWS) + 1)}")
        return await self._series(WalletDayVolume, query, p, _cap(max_rows, WALLET_DAY_ROWS))

    async def _series(self, model, query: str, p: Params, cap: int) -> Series:
        """Fetch one row more than the cap, to tell a complete result from a cut one."""
        async with self._read() as conn:
            rows = await conn.fetch(query, *p.values)
        return Series(items=[model.model_validate(dict(r)) for r in rows[:cap]], truncated=len(rows) > cap)
