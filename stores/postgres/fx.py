"""FX rates (time series) and the reference data of money movement: currencies and corridors."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from stores.errors import InvalidData, NotFound
from stores.postgres.base import Repository, cap_limit
from stores.postgres.errors import pg_errors
from stores.postgres.models import Corridor, FxRate

_RATE_COLUMNS = "id, base_currency, quote_currency, rate, source, observed_at"


class FxRepository(Repository):
    async def latest_rate(self, base: str, quote: str, *, at: datetime | None = None) -> FxRate:
        async with self._read() as conn:
            return await self.latest_rate_in(conn, base, quote, at=at)

    @staticmethod
    async def latest_rate_in(conn: asyncpg.Connection, base: str, quote: str, *,
                             at: datetime | None = None) -> FxRate:
        """The newest rate observed at or before `at` (now by default)."""
        with pg_errors():
            row = await conn.fetchrow(
                f"SELECT {_RATE_COLUMNS} FROM fx_rates WHERE base_currency = $1 AND quote_currency = $2 "
                "AND observed_at <= COALESCE($3, now()) ORDER BY observed_at DESC LIMIT 1", base, quote, at)
        if row is None:
            raise NotFound(f"no FX rate for {base}/{quote}", store="postgres")
        return FxRate.model_validate(dict(row))

    @staticmethod
    async def insert_rate_in(conn: asyncpg.Connection, base: str, quote: str, rate, source: str,
                             observed_at: datetime) -> FxRate:
        """Record one observation of a pair (the FX service's write path)."""
        with pg_errors():
            row = await conn.fetchrow(
                f"INSERT INTO fx_rates (base_currency, quote_currency, rate, source, observed_at) "
                f"VALUES ($1, $2, $3, $4, $5) RETURNING {_RATE_COLUMNS}", base, quote, rate, source, observed_at)
        return FxRate.model_validate(dict(row))

    async def rate_history(self, base: str, quote: str, date_from: datetime, date_to: datetime, *,
                           limit: int = 100) -> list[FxRate]:
        """Observations of a pair in [date_from, date_to), newest first (a time series)."""
        async with self._read() as conn:
            rows = await conn.fetch(
                f"SELECT {_RATE_COLUMNS} FROM fx_rates WHERE base_currency = $1 AND quote_currency = $2 "
                "AND observed_at >= $3 AND observed_at < $4 ORDER BY observed_at DESC LIMIT $5",
                base, quote, date_from, date_to, cap_limit(limit))
        return [FxRate.model_validate(dict(r)) for r in rows]

    async def corridors(self, *, enabled_only: bool = True) -> list[Corridor]:
        async with self._read() as conn:
            rows = await conn.fetch("SELECT * FROM corridors WHERE enabled OR NOT $1 ORDER BY id", enabled_only)
        return [Corridor.model_validate(dict(r)) for r in rows]

    @staticmethod
    async def corridor_in(conn: asyncpg.Connection, corridor_id: str) -> Corridor:
        row = await conn.fetchrow("SELECT * FROM corridors WHERE id = $1", corridor_id)
        if row is None or not row["enabled"]:
            raise InvalidData(f"unknown or disabled corridor {corridor_id!r}", store="postgres")
        return Corridor.model_validate(dict(row))

    @staticmethod
    async def exponent_in(conn: asyncpg.Connection, currency: str) -> int:
        exponent = await conn.fetchval("SELECT exponent FROM currencies WHERE code = $1", currency)
        if exponent is None:
            raise InvalidData("unknown currency", store="postgres")
        return exponent
