"""get_fx_quote: what a conversion would give now, priced by the FX service (latest rate, cached 24 h in Redis and
evicted by every new rate, less the platform's markup). Reference data: no user's rows. Operators switch it off
with the feature flag `tools.get_fx_quote.enabled`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from agent_tools.common import ToolInput, money
from agent_tools.context import ToolContext
from agent_tools.spec import ToolSpec
from guards.access import reference_data
from guards.errors import BadInput, NotFoundInScope, Unavailable
from guards.principal import Role
from stores.errors import InvalidData, NotFound

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3,4}$", description="ISO 4217 code (or USDC/USDT).")]


class GetFxQuoteInput(ToolInput):
    """Price converting an amount from one currency into another at the current rate."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"sell_currency": "USD", "buy_currency": "NGN", "sell_amount_minor": 10_000}]})

    sell_currency: Currency
    buy_currency: Currency
    sell_amount_minor: int = Field(gt=0, le=10**12, description="Amount to convert, in minor units (cents).")


class FxQuoteOut(BaseModel):
    sell_currency: str
    buy_currency: str
    sell_amount_minor: int
    buy_amount_minor: int
    #: Rates as decimal strings (exact, unlike JSON numbers).
    mid_rate: Decimal
    applied_rate: Decimal
    markup_bps: int
    rate_observed_at: datetime
    quoted_at: datetime
    #: The quote holds until then (a minute, never past the rate's own day of freshness).
    expires_at: datetime


async def get_fx_quote(args: GetFxQuoteInput, ctx: ToolContext[None]) -> FxQuoteOut:
    pair = f"{args.sell_currency}/{args.buy_currency}"
    if args.sell_currency == args.buy_currency:
        raise BadInput("invalid arguments: sell_currency and buy_currency must differ")
    try:
        quote = await ctx.services.fx.quote(args.model_dump())
    except NotFound:
        raise NotFoundInScope(f"no FX rate for {pair}") from None
    except InvalidData as exc:
        if "stale" in str(exc):  # the feed has not delivered a rate for a day: nothing to quote at
            raise Unavailable(f"no current FX rate for {pair}; try again later") from None
        raise BadInput(f"invalid arguments: cannot quote {pair} for this amount") from None
    return FxQuoteOut(**quote.model_dump())


def render_fx_quote(p: dict[str, Any]) -> str:
    sell, buy = money(p["sell_amount_minor"], p["sell_currency"]), money(p["buy_amount_minor"], p["buy_currency"])
    return (f"{sell} buys {buy} at {p['applied_rate']} (mid {p['mid_rate']} less {p['markup_bps']} bps); valid until "
            f"{p['expires_at']}.")


GET_FX_QUOTE = ToolSpec(
    name="get_fx_quote", title="FX quote",
    description="What converting sell_amount_minor of sell_currency into buy_currency would give now: the latest "
                "rate less the platform's markup, valid until expires_at (about a minute). An indication, not an "
                "order.",
    input_model=GetFxQuoteInput, output_model=FxQuoteOut, handler=get_fx_quote,
    grant={Role.CUSTOMER, Role.SUPPORT_AGENT}, scope=reference_data(), render=render_fx_quote,
    enabled_by="tools.get_fx_quote.enabled")
