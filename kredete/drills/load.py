"""The write load of a drill: payments (deposits with their ledger postings) through PaymentService and
credit-store writes (score points) through the Mongo repositories, every acknowledged write remembered.

The load keeps going through an outage: a failed write is counted, not acknowledged, and retried later with
a new idempotency key, so after recovery every acknowledgement can be looked for.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from stores.errors import NotFound, StoreError
from stores.scope import RowScope

#: Score points of a drill get as_of times counted from here (one per write, per user): a range query finds them.
AS_OF_BASE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Ack:
    kind: str  # "payment" | "credit"
    user_id: UUID
    key: str  # transaction id, or the score point's as_of (ISO)
    at: float  # wall time (epoch seconds) when the write was acknowledged
    created_at: datetime | None = None
    #: When the write was sent: one sent after an instant cannot have committed before it.
    started: float = 0.0


@dataclass
class LoadStats:
    acks: list[Ack] = field(default_factory=list)
    errors: int = 0
    first_error_at: float | None = None
    #: First acknowledgement of a write sent after `mark` (set by the drill once the cut is done): when writes
    #: work again. A write sent before it may be acknowledged by the old primary just after it.
    mark: float | None = None
    first_ack_after_mark: float | None = None

    def ack(self, a: Ack) -> None:
        self.acks.append(a)
        if self.mark is not None and self.first_ack_after_mark is None and a.started > self.mark:
            self.first_ack_after_mark = a.at


class WriteLoad:
    """`workers` concurrent writers; every `credit_every`-th write of a worker goes to the credit store."""

    def __init__(self, users: list[UUID], *, run_id: str, workers: int = 4, credit_every: int = 3,
                 pause_s: float = 0.02) -> None:
        self.users, self.run_id, self.workers = users, run_id, workers
        self.credit_every, self.pause_s = credit_every, pause_s
        self.stats = LoadStats()
        self._seq = 0
        self._score_seq: dict[UUID, int] = {}
        # Each run's score points get their own as_of range (1000 s per started second), so the range
        # queries of one run never page through another run's points.
        self.as_of_base = AS_OF_BASE + timedelta(seconds=(int(time.time()) % 10**6) * 1000)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    async def run(self, stop: asyncio.Event) -> LoadStats:
        import logging

        from config.settings import resolve
        from services.payments import PaymentService
        from stores.mongo import MongoStore
        from stores.mongo.credit import ScoreHistoryRepository
        from stores.registry import build_postgres

        # The pool's own retry tracebacks while the primary is down are the outage the drill causes.
        logging.getLogger("asyncpg").setLevel(logging.CRITICAL)
        s = resolve()
        pg = build_postgres(s)
        mongo = MongoStore(s.mongo_url.get_secret_value(), s.mongo_db, timeout=s.connect_timeout_s)
        await pg.connect()
        await mongo.connect()
        payments, scores = PaymentService(pg), ScoreHistoryRepository(mongo)
        try:
            await asyncio.gather(*(self._worker(w, stop, payments, scores) for w in range(self.workers)))
        finally:
            await pg.close()
            await mongo.close()
        return self.stats

    async def _worker(self, w: int, stop: asyncio.Event, payments, scores) -> None:
        from stores.mongo.documents import Bureau, ScorePoint

        n = 0
        while not stop.is_set():
            n += 1
            i = self._next()
            uid = self.users[i % len(self.users)]
            sent = time.time()
            try:
                if n % self.credit_every == 0:
                    k = self._score_seq.get(uid, 0)
                    self._score_seq[uid] = k + 1
                    as_of = self.as_of_base + timedelta(seconds=k)
                    await scores.record(ScorePoint(user_id=uid, bureau=Bureau.EXPERIAN, score_model=self.run_id,
                                                   score=300 + i % 500, as_of=as_of, source="estimate"))
                    self.stats.ack(Ack("credit", uid, as_of.isoformat(), time.time(), started=sent))
                else:
                    res = await payments.deposit({"user_id": uid, "amount_minor": 100 + i % 900, "currency": "USD",
                                                  "description": f"drill {self.run_id}"},
                                                 idempotency_key=f"drill-{self.run_id}-{i}")
                    self.stats.ack(Ack("payment", uid, str(res.transaction_id), time.time(), res.created_at,
                                       started=sent))
            except (TimeoutError, StoreError, OSError) as exc:
                self.stats.errors += 1
                if self.stats.first_error_at is None:
                    self.stats.first_error_at = time.time()
                if isinstance(exc, StoreError) and not _transient(exc):
                    raise
                await asyncio.sleep(0.25)
            except Exception:
                # a driver error surfacing raw during a kill (connection reset mid-query): an outage too
                self.stats.errors += 1
                await asyncio.sleep(0.25)
            await asyncio.sleep(self.pause_s)


def _transient(exc: StoreError) -> bool:
    from stores.errors import InvalidData, StoreConfigError

    return not isinstance(exc, (InvalidData, StoreConfigError)) or "connect" in str(exc).lower()


#: The most points one `series` read returns (the repository's cap).
SERIES_LIMIT = 100


async def _points_between(scores, uid: UUID, stamps: list[datetime], run_id: str) -> set[str]:
    """The run's points of `uid` (as_of, ISO) from the first to the last of `stamps` (sorted acknowledged ones).

    A full page means the range may hold more points than were returned (`series` keeps the newest): points
    written but never acknowledged (a write that failed at the client during the failover yet committed) sit
    between acknowledged ones. Then the range is split, so no acknowledged point is missed for lack of room
    on a page (one such point pushed the oldest acknowledged one off a page: a lost write reported that was
    not lost).
    """
    points = await scores.series(RowScope.users(uid), uid, stamps[0], stamps[-1], limit=SERIES_LIMIT)
    if len(points) < SERIES_LIMIT or len(stamps) == 1:
        return {p.as_of.astimezone(UTC).isoformat() for p in points if p.score_model == run_id}
    mid = len(stamps) // 2
    return (await _points_between(scores, uid, stamps[:mid], run_id)
            | await _points_between(scores, uid, stamps[mid:], run_id))


async def missing(acks: list[Ack], *, run_id: str, pg_url: str | None = None, mongo_url: str | None = None,
                  mongo_db: str | None = None) -> list[Ack]:
    """The acknowledged writes that cannot be found (payments by id with their ledger entries, score points
    by as_of), on the live stack or on the given URLs (a restored copy)."""
    from config.settings import resolve
    from stores.mongo import MongoStore
    from stores.mongo.credit import ScoreHistoryRepository
    from stores.postgres import PostgresStore, TransactionRepository

    s = resolve()
    pg = PostgresStore(pg_url or s.postgres_url.get_secret_value(), timeout=s.connect_timeout_s,
                       statement_timeout_ms=60_000)
    mongo = MongoStore(mongo_url or s.mongo_url.get_secret_value(), mongo_db or s.mongo_db,
                       timeout=s.connect_timeout_s)
    await pg.connect()
    await mongo.connect()
    lost: list[Ack] = []
    try:
        txs = TransactionRepository(pg, replica_reads=False)
        sem = asyncio.Semaphore(8)

        async def check_payment(a: Ack) -> None:
            async with sem:
                try:
                    detail = await txs.get(RowScope.users(a.user_id), UUID(a.key), created_at=a.created_at)
                except NotFound:
                    lost.append(a)
                    return
                if len(detail.entries) < 2:
                    lost.append(a)

        await asyncio.gather(*(check_payment(a) for a in acks if a.kind == "payment"))
        scores = ScoreHistoryRepository(mongo)
        by_user: dict[UUID, list[Ack]] = {}
        for a in acks:
            if a.kind == "credit":
                by_user.setdefault(a.user_id, []).append(a)
        for uid, items in by_user.items():
            found: set[str] = set()
            stamps = sorted(datetime.fromisoformat(a.key) for a in items)
            for start in range(0, len(stamps), SERIES_LIMIT):
                found |= await _points_between(scores, uid, stamps[start:start + SERIES_LIMIT], run_id)
            lost += [a for a in items if a.key not in found]
    finally:
        await pg.close()
        await mongo.close()
    return sorted(lost, key=lambda a: a.at)
