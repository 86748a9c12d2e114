"""CreditService: credit scores (cached 5 min), score history, report versions, and the write paths that
emit the credit store's change events (the cache invalidation publisher and the leaderboards follow them)."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime
from uuid import UUID

from services.caching import SCORE, SCORES_TOPIC, WAKE_CHANNEL, CreditScore, score_key
from stores.cache import CacheStore
from stores.cache.aside import ReadThroughCache
from stores.errors import NotFound, StoreError
from stores.mongo.cdc import ChangeEvent, Outbox
from stores.mongo.client import MongoStore
from stores.mongo.credit import CreditReportRepository, ScoreHistoryRepository, user_key
from stores.mongo.documents import CreditReport, ScorePoint
from stores.mongo.encryption import FieldEncryption
from stores.mongo.reveal import RevealGrant
from stores.scope import RowScope

log = logging.getLogger("kredete.services.credit")


def score_event_id(point: ScorePoint) -> str:
    return f"{SCORES_TOPIC}:{point.user_id}:{point.bureau}:{point.score_model}:{point.as_of.isoformat()}"


class CreditService:
    """Reads take the caller's `RowScope` and check it before the cache is touched; writes are service-side."""

    def __init__(self, mongo: MongoStore, *, cache: ReadThroughCache | None = None,
                 encryption: FieldEncryption | None = None) -> None:
        self.db = mongo.db if isinstance(mongo, MongoStore) else mongo
        self.outbox = Outbox(self.db)
        self.reports = CreditReportRepository(self.db, encryption=encryption, outbox=self.outbox)
        self.scores = ScoreHistoryRepository(self.db, outbox=self.outbox)
        self.cache = cache or ReadThroughCache(None)

    # --- reads --------------------------------------------------------------------------------------------
    async def credit_score(self, scope: RowScope, user_id: UUID | str) -> CreditScore:
        """The latest score point of the user across bureaus. NotFound when none (or out of scope)."""
        uid = user_key(user_id)
        if not scope.allows(uid):  # scope before cache: a cached value is never served out of scope
            raise NotFound("no score in scope", store="mongo")

        async def load() -> CreditScore | None:
            points = await self.scores.series(RowScope.users(uid), uid, limit=1)
            if not points:
                return None
            p = points[-1]
            return CreditScore(user_id=UUID(uid), score=p.score, bureau=str(p.bureau), score_model=p.score_model,
                               as_of=p.as_of, source=p.source)

        found = await self.cache.get(SCORE, score_key(uid), load)
        if found is None:
            raise NotFound("no score in scope", store="mongo")
        return found

    async def score_history(self, scope: RowScope, user_id: UUID | str, date_from: datetime | None = None,
                            date_to: datetime | None = None, *, limit: int = 100) -> list[ScorePoint]:
        return await self.scores.series(scope, user_id, date_from, date_to, limit=limit)

    async def latest_report(self, scope: RowScope, user_id: UUID | str, *, bureau: str | None = None,
                            reveal: RevealGrant | None = None) -> CreditReport:
        return await self.reports.latest(scope, user_id, bureau=bureau, reveal=reveal)

    async def report_versions(self, scope: RowScope, user_id: UUID | str, *, bureau: str | None = None,
                              limit: int = 20) -> list[CreditReport]:
        return await self.reports.list_versions(scope, user_id, bureau=bureau, limit=limit)

    # --- writes (each emits a change event) -------------------------------------------------------------
    async def record_score(self, point: ScorePoint) -> ScorePoint:
        """Store a score point (idempotent) and emit a `score_history` event."""
        point = await self.scores.record(point)
        event = await self.outbox.emit(SCORES_TOPIC, "insert", score_event_id(point), point.user_id,
                                       {"bureau": str(point.bureau), "score": point.score,
                                        "as_of": point.as_of.isoformat()}, event_id=score_event_id(point))
        await self._wake(event)
        return point

    async def add_report_version(self, report: CreditReport) -> CreditReport:
        """Write the next version of a user's report (emits `credit_reports`); its score, if any, becomes a
        score point too."""
        new = await self.reports.add_version(report)
        if new.score is not None:  # its point's event (and wake-up) covers the report's key too
            await self.record_score(ScorePoint(user_id=new.user_id, bureau=new.bureau, score_model=new.score_model,
                                               score=new.score, as_of=new.valid_from, report_id=new.id))
        else:
            await self._wake()
        return new

    async def _wake(self, event: ChangeEvent | None = None) -> None:
        """Poke the invalidation publisher with the event just appended to the outbox, so it can evict at once
        (best effort: the outbox, which it also polls, stays the record it works from)."""
        store: CacheStore | None = self.cache.store
        if store is not None:
            hint = event.model_dump(mode="json", include={"event_id", "topic", "user_id", "document_id", "data",
                                                           "at"}) if event is not None else None
            with contextlib.suppress(StoreError):
                await store.publish(WAKE_CHANNEL, json.dumps({"keys": [], "event": "wake", "hint": hint}))
