"""Aggregates for risk and compliance: no row-level data.

An aggregate can still point at a person: a corridor-day with one payment is that payment. Cells with fewer than
`Settings.aggregate_min_cell_size` transactions or distinct users are withheld (`aggregates_only`, which also
decides what the count of withheld cells may say); cells are whole UTC days and the current day is left out,
so queries cannot be differenced down to one payment (see `AnalyticsRepository.volume_by_corridor`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from agent_tools.common import Cursor, ToolInput
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import AggregateScope, aggregates_only
from guards.principal import Role

#: Cells per page. A cell is ~46 tokens of output at most (big counts and volumes, a dest currency): a page
#: of 50 is ~2,400 tokens, of 60 ~2,860, of 100 ~4,700, over the 4,000-token output budget. So 50 by default
#: and at most 60: a full page always fits with margin and the budget never has to cut it.
MAX_CORRIDOR_LIMIT = 60
CorridorLimit = Annotated[int, Field(ge=1, le=MAX_CORRIDOR_LIMIT,
                                     description=f"Cells per page, 1..{MAX_CORRIDOR_LIMIT}.")]


class CorridorVolumeInput(ToolInput):
    """Aggregated transaction volume by corridor and day (no row-level data)."""

    date_from: datetime
    date_to: datetime
    corridor: str | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z]{2}$")
    cursor: Cursor | None = None
    limit: CorridorLimit = 50

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
    #: One page of shown cells, in (day, corridor, currency, dest_currency) order.
    rows: list[CorridorDayOut]
    #: Cells (day x corridor x currency pair) withheld in the whole window because they were smaller than
    #: `min_cell_size`, as the guard lets an answer say it (`AggregateScope.reportable_suppressed`): 0 unless
    #: the window shows some cell, then rounded down to a multiple of `min_cell_size`. Counted for the whole
    #: window, not the page: every page of one query says the same number, so paging reveals nothing finer.
    suppressed_cells: int = Field(0, ge=0)
    #: The smallest cell shown: at least this many transactions from at least this many distinct users.
    min_cell_size: int = Field(ge=1)
    #: Pass it back (same arguments) for the next page; null: no more cells (as search_transactions says it).
    next_cursor: str | None = None
    _page: Any = PrivateAttr(default=None)

    def cursor_after(self, index: int) -> str | None:
        """The cursor resuming right after `rows[index]` (used when the output budget cuts the page)."""
        return self._page.cursor_after(index) if self._page is not None else None


_RENAMES = {"bucket": "day", "corridor_id": "corridor", "transaction_count": "transactions",
            "amount_minor": "volume_minor"}
#: (output field, the repository cell's field it comes from).
_CELL = tuple((name, next((src for src, dst in _RENAMES.items() if dst == name), name))
              for name in CorridorDayOut.model_fields)


async def corridor_volume(args: CorridorVolumeInput, ctx: ToolContext[AggregateScope]) -> CorridorVolumeOut:
    k = ctx.scope.min_cell_size
    page = await ctx.repos.analytics.volume_by_corridor(args.date_from, args.date_to, granularity="day",
                                                        corridor=args.corridor, min_cell_size=k,
                                                        max_rows=args.limit, cursor=args.cursor)
    # The page validated in one call (not one model per row, nor a dump of each cell to rename its fields).
    out = CorridorVolumeOut.model_validate({
        "rows": [{name: getattr(cell, src) for name, src in _CELL} for cell in page], "min_cell_size": k,
        "suppressed_cells": ctx.scope.reportable_suppressed(page.suppressed_cells, page.shown_cells),
        "next_cursor": page.next_cursor})
    out._page = page
    return out


CORRIDOR_VOLUME = ToolSpec(
    name="corridor_volume", title="Corridor volume",
    description="Aggregated transaction count and volume of completed remittances by corridor, UTC day and "
                "currency pair; no row-level data. Only whole past days; a cell with fewer than min_cell_size "
                "transactions or distinct users is withheld. suppressed_cells says how many were withheld in the "
                "whole window only when some cell is shown, rounded down to a multiple of min_cell_size (0 "
                "otherwise), so a window of small cells answers like a window without activity; every page "
                "says the same number. Cells come in pages of `limit` (day, corridor, currency pair order); "
                "pass next_cursor with the same arguments for the next page (null: no more cells).",
    input_model=CorridorVolumeInput, output_model=CorridorVolumeOut, handler=corridor_volume,
    grant={Role.RISK_ANALYST, Role.COMPLIANCE_OFFICER}, scope=aggregates_only(), list_field="rows")
