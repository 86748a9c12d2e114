"""Aggregates for risk and compliance: no row-level data.

An aggregate can still point at a person: a corridor-day with one payment is that payment. Cells with fewer than
`Settings.aggregate_min_cell_size` transactions or distinct users are withheld and only counted
(`suppressed_cells`); cells are whole UTC days and the current day is left out, so queries cannot be differenced
down to one payment (see `AnalyticsRepository.volume_by_corridor`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from agent_tools.inputs import CorridorVolumeInput
from agent_tools.transactions import pick
from guards.principal import Principal


class CorridorDayOut(BaseModel):
    day: datetime
    corridor: str
    currency: str
    dest_currency: str | None = None
    transactions: int
    volume_minor: int


class CorridorVolumeOut(BaseModel):
    rows: list[CorridorDayOut]
    #: Cells (day x corridor x currency pair) withheld because they were smaller than `min_cell_size`.
    suppressed_cells: int = Field(0, ge=0)
    #: The smallest cell shown: at least this many transactions from at least this many distinct users.
    min_cell_size: int = Field(ge=1)


async def corridor_volume(args: CorridorVolumeInput, principal: Principal, rt: Any) -> CorridorVolumeOut:
    k = rt.settings.aggregate_min_cell_size
    rows = await rt.analytics.volume_by_corridor(args.date_from, args.date_to, granularity="day",
                                                 corridor=args.corridor, min_cell_size=k)
    renames = {"bucket": "day", "corridor_id": "corridor", "transaction_count": "transactions",
               "amount_minor": "volume_minor"}
    return CorridorVolumeOut(rows=[CorridorDayOut(**pick(r, CorridorDayOut, renames)) for r in rows],
                             suppressed_cells=rows.suppressed_cells, min_cell_size=k)
