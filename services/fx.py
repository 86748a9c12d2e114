"""FXService: the latest rate of a pair (cached 24 h, evicted by the `fx_rates` event of every new rate), quotes
with their expiry, and the write path that records rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from services.caching import FX_RATE, FX_RATES_TOPIC, fx_key
from services.payments import MAX_RATE_AGE, _validate, convert
from stores.cache.aside import ReadThroughCache
from stores.errors import InvalidData, NotFound
from stores.postgres.errors import pg_errors
from stores.postgres.fx import FxRepository
from stores.postgres.models import Corridor, FxRate
from stores.postgres.outbox import ChangeEventRepository
from stores.postgres.pool import PostgresStore

#: A quote holds this long (and never past the rate's own freshness limit).
QUOTE_TTL = timedelta(seconds=60)
_CODE = r"^[A-Z]{3,4}$"


class QuoteRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sell_currency: str = Field(pattern=_CODE)
    buy_currency: str = Field(pattern=_CODE)
    sell_amount_minor: int = Field(gt=0, le=10**15)
    markup_bps: int = Field(50, ge=0, le=1000)


class FxQuote(BaseModel):
    """What a conversion would give now; valid until `expires_at`."""

    model_config = ConfigDict(frozen=True)

    sell_currency: str
    buy_currency: str
    sell_amount_minor: int
    buy_amount_minor: int
    mid_rate: Decimal
    applied_rate: Decimal
    markup_bps: int
    rate_observed_at: datetime
    quoted_at: datetime
    expires_at: datetime


class RateUpdate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_currency: str = Field(pattern=_CODE)
    quote_currency: str = Field(pattern=_CODE)
    rate: Decimal = Field(gt=0, max_digits=24, decimal_places=12)
    source: str = Field(min_length=1, max_length=100)
    observed_at: datetime


class FXService:
    def __init__(self, store: PostgresStore, *, cache: ReadThroughCache | None = None) -> None:
        self.store = store
        # The rate is read on the primary: a lagging replica could refill the cache with the old rate.
        self.fx = FxRepository(store, replica_reads=False)
        self.cache = cache or ReadThroughCache(None)

    async def rate(self, base: str, quote: str) -> FxRate:
        """The newest observed rate of the pair (NotFound when the pair has none)."""
        base, quote = base.upper(), quote.upper()

        async def load() -> FxRate | None:
            try:
                return await self.fx.latest_rate(base, quote)
            except NotFound:
                return None

        found = await self.cache.get(FX_RATE, fx_key(base, quote), load)
        if found is None:
            raise NotFound(f"no FX rate for {base}/{quote}", store="postgres")
        return found

    async def quote(self, request: QuoteRequest | dict) -> FxQuote:
        """Price a conversion at the latest rate less the markup, as `PaymentService.fx_order` would."""
        req = _validate(QuoteRequest, request)
        if req.sell_currency == req.buy_currency:
            raise InvalidData("sell and buy currencies must differ", store="fx")
        now = datetime.now(UTC)
        mid = await self.rate(req.sell_currency, req.buy_currency)
        if now - mid.observed_at > MAX_RATE_AGE:
            raise InvalidData(f"the {req.sell_currency}/{req.buy_currency} rate is stale", store="fx")
        async with self.store.connection() as conn:
            sell_exp = await FxRepository.exponent_in(conn, req.sell_currency)
            buy_exp = await FxRepository.exponent_in(conn, req.buy_currency)
        applied = (mid.rate * (Decimal(10_000 - req.markup_bps) / 10_000)).quantize(Decimal("1e-12"))
        buy = convert(req.sell_amount_minor, applied, sell_exp, buy_exp)
        if buy <= 0:
            raise InvalidData("amount too small to convert", store="fx")
        expires = min(now + QUOTE_TTL, mid.observed_at + MAX_RATE_AGE)
        return FxQuote(sell_currency=req.sell_currency, buy_currency=req.buy_currency,
                       sell_amount_minor=req.sell_amount_minor, buy_amount_minor=buy, mid_rate=mid.rate,
                       applied_rate=applied, markup_bps=req.markup_bps, rate_observed_at=mid.observed_at,
                       quoted_at=now, expires_at=expires)

    async def corridors(self) -> list[Corridor]:
        return await self.fx.corridors()

    async def record_rate(self, update: RateUpdate | dict) -> FxRate:
        """Store a new observation and emit an `fx_rates` event in the same transaction."""
        upd = _validate(RateUpdate, update)
        with pg_errors():
            async with self.store.transaction() as conn:
                row = await FxRepository.insert_rate_in(conn, upd.base_currency, upd.quote_currency, upd.rate,
                                                        upd.source, upd.observed_at)
                await ChangeEventRepository.emit_in(
                    conn, FX_RATES_TOPIC, f"{row.base_currency}-{row.quote_currency}", None,
                    {"base": row.base_currency, "quote": row.quote_currency, "rate_id": row.id})
        return row
