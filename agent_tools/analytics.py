"""Aggregates for risk and compliance: no row-level data, so nothing personal to leak."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from agent_tools.inputs import CorridorVolumeInput
from agent_tools.transactions import pick
from guards.principal import Principal


class CorridorDayOut(BaseModel):
    day: datetime
    corridor: str
    currency: str
    transactions: int
    volume_minor: int


class CorridorVolumeOut(BaseModel):
    rows: list[CorridorDayOut]


async def corridor_volume(args: CorridorVolumeInput, principal: Principal, rt: Any) -> CorridorVolumeOut:
    rows = await rt.analytics.volume_by_corridor(args.date_from, args.date_to, granularity="day",
                                                 corridor=args.corridor)
    renames = {"bucket": "day", "corridor_id": "corridor", "transaction_count": "transactions",
               "amount_minor": "volume_minor"}
    return CorridorVolumeOut(rows=[CorridorDayOut(**pick(r, CorridorDayOut, renames)) for r in rows])
