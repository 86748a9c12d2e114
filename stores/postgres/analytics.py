"""Aggregations and time series (no row-level PII): corridor volumes for risk, daily wallet volumes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from stores.errors import InvalidData
from stores.postgres.base import Params, Repository, scope_clause
from stores.postgres.models import CorridorVolume, Granularity, Series, TransactionStatus, WalletDayVolume
from stores.scope import RowScope

_GRANULARITIES = ("hour", "day", "week", "month")
#: A time series never has more buckets than this (e.g. 400 days, 2 years of weeks).
MAX_BUCKETS = 1000
#: Row caps of the aggregate queries (one row per bucket and group); a capped result says `truncated`.
CORRIDOR_ROWS = MAX_BUCKETS * 50
WALLET_DAY_ROWS = MAX_BUCKETS * 10


def _cap(max_rows: int, ceiling: int) -> int:
    return max(1, min(int(max_rows), ceiling))


def _check_range(date_from: datetime, date_to: datetime) -> None:
    if date_to <= date_from:
        raise InvalidData("date_to must be after date_from", store="postgres")


class AnalyticsRepository(Repository):
    async def volume_by_corridor(self, date_from: datetime, date_to: datetime, granularity: Granularity = "day", *,
                                 status: TransactionStatus = "completed", corridor: str | None = None,
                                 max_rows: int = CORRIDOR_ROWS) -> Series[CorridorVolume]:
        """Count and sums per (bucket, corridor, currency pair) of remittances in [date_from, date_to), at most
        `max_rows` rows (`truncated` says when there were more)."""
        if granularity not in _GRANULARITIES:
            raise InvalidData(f"granularity must be one of {', '.join(_GRANULARITIES)}", store="postgres")
        _check_range(date_from, date_to)
        p = Params()
        where = [f"t.created_at >= {p.add(date_from)}", f"t.created_at < {p.add(date_to)}",
                 f"t.status = {p.add(status)}::transaction_status", "t.corridor_id IS NOT NULL"]
        if corridor is not None:
            where.append(f"t.corridor_id = {p.add(corridor)}")
        bucket = f"date_trunc({p.add(granularity)}, t.created_at, 'UTC')"
        query = (f"SELECT {bucket} AS bucket, t.corridor_id, t.currency, t.dest_currency, "
                 "count(*) AS transaction_count, sum(t.amount_minor)::bigint AS amount_minor, "
                 "sum(t.fee_minor)::bigint AS fee_minor, COALESCE(sum(t.dest_amount_minor), 0)::bigint "
                 f"AS dest_amount_minor FROM transactions t WHERE {' AND '.join(where)} "
                 f"GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 LIMIT {p.add(_cap(max_rows, CORRIDOR_ROWS) + 1)}")
        return await self._series(CorridorVolume, query, p, _cap(max_rows, CORRIDOR_ROWS))

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
