"""Credit-builder leaderboards: score improvement over 90 days, per corridor and month, opt-in, under
pseudonymous handles, kept current by the credit service's `score_history` events.

Who sees what: the app shows a customer the top handles of their corridor (`top`) and their own rank; agents
(tools, resources) get only `aggregate`, which withholds a cell with fewer participants than the minimum cell
size `corridor_volume` uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import statistics
from datetime import timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from services.caching import SCORES_TOPIC
from stores.cache.client import CacheStore
from stores.cache.leaderboard import LeaderboardStore
from stores.errors import Conflict, InvalidData
from stores.mongo.cdc import ChangeEvent, OutboxConsumer
from stores.mongo.credit import ScoreHistoryRepository
from stores.postgres.pool import PostgresStore
from stores.postgres.profiles import OptInRepository
from stores.scope import RowScope

WINDOW = timedelta(days=90)
CONSUMER = "leaderboards"
_ADJECTIVES = ("Amber", "Bold", "Brave", "Bright", "Calm", "Clever", "Coral", "Crisp", "Daring", "Eager", "Fleet",
               "Gentle", "Golden", "Happy", "Jade", "Keen", "Lively", "Lucky", "Mellow", "Misty", "Noble", "Quiet",
               "Rapid", "Royal", "Silver", "Steady", "Sunny", "Swift", "Tidy", "Vivid", "Warm", "Witty")
_ANIMALS = ("Antelope", "Badger", "Buffalo", "Cheetah", "Crane", "Dolphin", "Eagle", "Falcon", "Gazelle", "Gecko",
            "Giraffe", "Heron", "Ibis", "Impala", "Jackal", "Kestrel", "Kudu", "Leopard", "Lion", "Lynx", "Meerkat",
            "Okapi", "Oryx", "Otter", "Owl", "Panther", "Pelican", "Python", "Rhino", "Serval", "Stork", "Zebra")


class BoardAggregate(BaseModel):
    """What an agent may see of one board: counts and quantiles, or nothing when the cell is too small."""

    model_config = ConfigDict(frozen=True)

    corridor_id: str
    month: str
    participants: int | None  # None when suppressed
    mean_improvement: float | None
    median_improvement: float | None
    suppressed: bool


def pseudonym(user_id: UUID, key: bytes, attempt: int = 0) -> str:
    """A stable handle such as `Swift-Heron-42`: keyed, so it cannot be turned back into the user id."""
    d = hmac.new(key, f"{user_id}:{attempt}".encode(), hashlib.sha256).digest()
    return f"{_ADJECTIVES[d[0] % len(_ADJECTIVES)]}-{_ANIMALS[d[1] % len(_ANIMALS)]}-{int.from_bytes(d[2:4]) % 100:02d}"


class LeaderboardService:
    def __init__(self, postgres: PostgresStore, mongo_db, cache: CacheStore, *, handle_key: bytes,
                 min_cell_size: int = 5) -> None:
        self.optins = OptInRepository(postgres)
        self.scores = ScoreHistoryRepository(mongo_db)
        self.boards = LeaderboardStore(cache)
        self.db = mongo_db
        self.handle_key = handle_key
        self.min_cell_size = min_cell_size

    async def opt_in(self, user_id: UUID, corridor_id: str) -> str:
        """Join the leaderboards of a corridor; returns the user's handle. The current score is ranked at once."""
        for attempt in range(5):
            try:
                handle = await self.optins.opt_in(user_id, pseudonym(user_id, self.handle_key, attempt), corridor_id)
                break
            except Conflict:
                continue  # another user has that handle: derive the next one
            except InvalidData:
                raise
        else:
            raise Conflict("could not find a free handle", store="postgres")
        await self.update_user(user_id)
        return handle

    async def opt_out(self, user_id: UUID) -> None:
        """Leave: the handle disappears from the last months' boards of its corridor."""
        found = await self.optins.get(user_id)
        await self.optins.opt_out(user_id)
        if found:
            handle, corridor = found
            points = await self.scores.series(RowScope.users(user_id), user_id, limit=100)
            months = sorted({p.as_of.strftime("%Y-%m") for p in points})
            await self.boards.remove(corridor, months, handle)

    async def update_user(self, user_id: UUID | str) -> float | None:
        """Recompute one user's improvement (latest score minus the earliest of the 90 days before it, same
        bureau) into the board of the latest point's month; nothing for a user who has not opted in."""
        uid = UUID(str(user_id))
        found = await self.optins.get(uid)
        if found is None:
            return None
        handle, corridor = found
        points = await self.scores.series(RowScope.users(uid), uid, limit=100)
        if not points:
            return None
        latest = points[-1]
        window = [p for p in points if p.bureau == latest.bureau and p.as_of >= latest.as_of - WINDOW]
        improvement = float(latest.score - window[0].score)
        await self.boards.set_score(corridor, latest.as_of.strftime("%Y-%m"), handle, improvement)
        return improvement

    async def handle_events(self, events: list[ChangeEvent]) -> None:
        for user in dict.fromkeys(e.user_id for e in events if e.topic == SCORES_TOPIC and e.user_id):
            await self.update_user(user)

    async def follow(self, stop: asyncio.Event, *, interval: float = 0.5) -> None:
        """Apply the credit service's score events until `stop` is set (checkpointed, resumable)."""
        consumer = OutboxConsumer(self.db, CONSUMER, topics=(SCORES_TOPIC,))
        await consumer.run(self.handle_events, stop=stop, interval=interval)

    async def top(self, corridor_id: str, month: str, n: int = 10) -> list[tuple[int, str, float]]:
        """(rank, handle, improvement) of the best `n` (for the app; handles only)."""
        return [(i + 1, h, s) for i, (h, s) in enumerate(await self.boards.top(corridor_id, month, min(n, 100)))]

    async def aggregate(self, corridor_id: str, month: str) -> BoardAggregate:
        """Counts and quantiles of one board, withheld below the minimum cell size (what agents may see)."""
        scores = await self.boards.all_scores(corridor_id, month)
        if len(scores) < self.min_cell_size:
            return BoardAggregate(corridor_id=corridor_id, month=month, participants=None, mean_improvement=None,
                                  median_improvement=None, suppressed=True)
        return BoardAggregate(corridor_id=corridor_id, month=month, participants=len(scores),
                              mean_improvement=round(statistics.fmean(scores), 1),
                              median_improvement=round(statistics.median(scores), 1), suppressed=False)
