"""Aggregates for risk and compliance: no row-level data.

An aggregate can still point at a person: a corridor-day with one payment is that payment. Cells with fewer than
`Settings.aggregate_min_cell_size` transactions or distinct users are withheld (`aggregates_only`, which also
decides what the count of withheld cells may say); cells are whole UTC days and the current day is left out,
so queries cannot be differenced down to one payment (see `AnalyticsRepository.volume_by_corridor`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field, model_validator

from agent_tools.common import ToolInput, pick
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import AggregateScope, aggregates_only
from guards.principal import Role


class CorridorVolumeInput(ToolInput):
    """Aggregated transaction volume by corridor and day (no row-level data)."""

    date_from: datetime
    date_to: datetime
    corridor: str | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z]{2}$")

    @model_validator(mode="after")
    def _range(self) -> CorridorVolumeInput:
        if self.date_from >= self.date_to:
            raise ValueError("date_from must be before date_to")
        if self.date_to - self.date_from > timedelta(days=400):
            raise ValueError("range may span at most 400 days")
        return self


class CorridorDayOut(BaseModel):
    day: datetime
    corridor: str
    currency: str
    dest_currency: str | None = None
    transactions: int
    volume_minor: int


class CorridorVolumeOut(BaseModel):
    rows: list[CorridorDayOut]
    #: Cells (day x corridor x currency pair) withheld because they were smaller than `min_cell_size`, as the
    #: guard lets an answer say it (`AggregateScope.reportable_suppressed`): 0 unless some cell is shown, then
    #: rounded down to a multiple of `min_cell_size`.
    suppressed_cells: int = Field(0, ge=0)
    #: The smallest cell shown: at least this many transactions from at least this many distinct users.
    min_cell_size: int = Field(ge=1)


_RENAMES = {"bucket": "day", "corridor_id": "corridor", "transaction_count": "transactions",
            "amount_minor": "volume_minor"}


async def corridor_volume(args: CorridorVolumeInput, ctx: ToolContext[AggregateScope]) -> CorridorVolumeOut:
    k = ctx.scope.min_cell_size
    rows = await ctx.repos.analytics.volume_by_corridor(args.date_from, args.date_to, granularity="day",
                                                        corridor=args.corridor, min_cell_size=k)
    shown = [CorridorDayOut(**pick(r, CorridorDayOut, _RENAMES)) for r in rows]
    return CorridorVolumeOut(rows=shown, min_cell_size=k,
                             suppressed_cells=ctx.scope.reportable_suppressed(rows.suppressed_cells, len(shown)))


CORRIDOR_VOLUME = ToolSpec(
    name="corridor_volume", title="Corridor volume",
    description="Aggregated transaction count and volume of completed remittances by corridor, UTC day and "
                "currency pair; no row-level data. Only whole past days; a cell with fewer than min_cell_size "
                "transactions or distinct users is withheld. suppressed_cells says how many were withheld only "
                "when some cell is shown, rounded down to a multiple of min_cell_size (0 otherwise), so a window "
                "of small cells answers like a window without activity.",
    input_model=CorridorVolumeInput, output_model=CorridorVolumeOut, handler=corridor_volume,
    grant={Role.RISK_ANALYST, Role.COMPLIANCE_OFFICER}, scope=aggregates_only(), list_field="rows")
