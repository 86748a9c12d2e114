"""The invalidation publisher: change events → evictions in Redis → a pub/sub message every process acts on.

Sources, both outboxes written in the writer's own commit:
* PostgreSQL `change_events` (users, preferences, FX rates), woken by `LISTEN change_events` at COMMIT;
* the credit store's outbox (score points, report versions), woken by the writer's poke on `inval:wake`; the poke
  names the event it appended, so the keys are evicted at once and the outbox drain that follows re-handles it.
Both are also polled every `poll_s`, so a lost wake-up only delays. For each event the publisher bumps the
keys' generations and deletes them (`ReadThroughCache.invalidate`: no racing reader can refill the old value),
then publishes the keys; subscribers drop their local copies. Checkpoints advance only past events handled,
so a publisher that stops resumes where it was (at-least-once; evictions are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from services.caching import REPORTS_TOPIC, SCORES_TOPIC, WAKE_CHANNEL, keys_for, profile_key
from stores.cache.aside import ReadThroughCache
from stores.cache.client import CacheStore
from stores.cache.pubsub import InvalidationSubscriber, publish_invalidation
from stores.errors import StoreError
from stores.mongo.cdc import OutboxConsumer
from stores.postgres.outbox import NOTIFY_CHANNEL, ChangeEventRepository
from stores.postgres.pool import PostgresStore

log = logging.getLogger("kredete.services.invalidation")
CONSUMER = "cache-invalidation"


async def announce_erased(store: CacheStore, user_ids: list[str], event_id: str = "dsr-erase") -> None:
    """Tell every process that these users were just erased (after the database commit): their local copies
    (cached profiles, the MCP server's known PII) are dropped now rather than when they age out. An erasure
    emits no change event (it deletes the users' events), so it announces itself."""
    if user_ids:
        await publish_invalidation(store, [profile_key(u) for u in user_ids], event_id, time.time())


class InvalidationPublisher:
    def __init__(self, cache: ReadThroughCache, *, postgres: PostgresStore | None = None, mongo_db=None,
                 name: str = CONSUMER, poll_s: float = 1.0, gap_timeout_s: float = 10.0,
                 on_published: Callable[[str, list[str], float], None] | None = None) -> None:
        if cache.store is None:
            raise StoreError("the invalidation publisher needs Redis", store="redis")
        self.cache = cache
        self.name = name
        self.poll_s = poll_s
        self.gap_timeout_s = gap_timeout_s
        self.on_published = on_published
        self.events = ChangeEventRepository(postgres) if postgres is not None else None
        self.postgres = postgres
        self.mongo = OutboxConsumer(mongo_db, name, topics=(SCORES_TOPIC, REPORTS_TOPIC)) if mongo_db is not None \
            else None
        self.published = 0
        self.pg_done: int = 0  # highest Postgres seq handled (not necessarily contiguous)
        self._pg_seen: set[int] = set()
        self._pg_wake = asyncio.Event()
        self._mongo_wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._waker: InvalidationSubscriber | None = None
        self._progress = asyncio.Condition()
        self._hinted: set[asyncio.Task] = set()

    async def start(self) -> InvalidationPublisher:
        if self.events is not None:
            self._tasks.append(asyncio.create_task(self._listen_pg(), name="inval-pg-listen"))
            self._tasks.append(asyncio.create_task(self._loop(self._pg_wake, self._drain_pg), name="inval-pg"))
        if self.mongo is not None:
            self._waker = InvalidationSubscriber(self.cache.store, channel=WAKE_CHANNEL, on_keys=lambda _: None,
                                                 on_reset=self._mongo_wake.set, on_message=self._on_wake)
            await self._waker.start(wait_s=2)
            self._tasks.append(asyncio.create_task(self._loop(self._mongo_wake, self._drain_mongo),
                                                   name="inval-mongo"))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._tasks.clear()
        if self._waker is not None:
            await self._waker.stop()

    # --- loops ------------------------------------------------------------------------------------------
    async def _loop(self, wake: asyncio.Event, drain) -> None:
        while True:
            try:
                while await drain():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store down: retry after the poll interval
                log.warning("invalidation publisher (%s): %s; retrying", drain.__name__, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_s)
            wake.clear()

    async def _listen_pg(self) -> None:
        """Hold a connection that LISTENs for commits of change events (reconnects when it drops)."""
        while True:
            try:
                async with self.postgres.connection() as conn:  # type: ignore[union-attr]
                    wake = lambda *_: self._pg_wake.set()  # noqa: E731
                    await conn.add_listener(NOTIFY_CHANNEL, wake)
                    try:
                        self._pg_wake.set()  # catch up on anything committed while not listening
                        while not conn.is_closed():
                            await asyncio.sleep(1)
                            await conn.fetchval("SELECT 1")
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(NOTIFY_CHANNEL, wake)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection dropped: listen again
                log.warning("invalidation publisher lost its LISTEN connection (%s)", type(exc).__name__)
            await asyncio.sleep(self.poll_s)

    async def _drain_pg(self) -> bool:
        """Handle the next page of Postgres events; True when there may be more."""
        assert self.events is not None
        ckpt = await self.events.checkpoint(self.name)
        if ckpt is None:  # a new consumer starts from now: the cache holds nothing older than its TTL
            await self.events.save_checkpoint(self.name, await self.events.last_seq())
            return False
        batch = await self.events.after(ckpt)
        fresh = [e for e in batch if e.seq not in self._pg_seen]
        for e in fresh:
            await self._evict(f"pg:{e.seq}", keys_for(e.topic, e.user_id and str(e.user_id), e.entity_id, e.data),
                              e.created_at.timestamp())
            self._pg_seen.add(e.seq)
            self.pg_done = max(self.pg_done, e.seq)
        # Advance the checkpoint over the contiguous prefix; a hole is skipped once the event after it is old.
        upto, now = ckpt, time.time()
        for e in batch:
            if e.seq != upto + 1 and now - e.created_at.timestamp() <= self.gap_timeout_s:
                break
            upto = e.seq
        if upto > ckpt:
            await self.events.save_checkpoint(self.name, upto)
            self._pg_seen = {s for s in self._pg_seen if s > upto}
        await self._notify()
        return len(batch) >= 500 and upto > ckpt

    def _on_wake(self, payload: dict, _received: float) -> None:
        """A writer's wake-up. When it names the event it appended, evict at once (the fast path); the outbox
        drain that follows handles the same event again (idempotent) and anything a lost wake-up missed."""
        self._mongo_wake.set()
        hint = payload.get("hint")
        if isinstance(hint, dict) and hint.get("topic") in (SCORES_TOPIC, REPORTS_TOPIC):
            keys = keys_for(str(hint["topic"]), hint.get("user_id"), str(hint.get("document_id", "")),
                            hint.get("data") or {})
            at = time.time()
            with contextlib.suppress(ValueError, TypeError):
                at = datetime.fromisoformat(str(hint.get("at"))).timestamp()
            task = asyncio.create_task(self._evict_hinted(str(hint.get("event_id")), keys, at))
            self._hinted.add(task)
            task.add_done_callback(self._hinted.discard)

    async def _drain_mongo(self) -> bool:
        assert self.mongo is not None
        events = await self.mongo.poll()
        for e in events:
            await self._evict(e.event_id, keys_for(e.topic, e.user_id, e.document_id, e.data), e.at.timestamp())
        await self.mongo.commit()
        await self._notify()
        return bool(events)

    async def _evict_hinted(self, event_id: str, keys: list[str], at: float) -> None:
        with contextlib.suppress(StoreError):  # the outbox drain evicts it anyway
            await self._evict(event_id, keys, at)

    async def _evict(self, event_id: str, keys: list[str], at: float) -> None:
        if not keys:
            return
        await self.cache.invalidate(*keys)
        await publish_invalidation(self.cache.store, keys, event_id, at)  # type: ignore[arg-type]
        self.published += 1
        if self.on_published is not None:
            self.on_published(event_id, keys, at)

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def wait_pg(self, seq: int, timeout: float = 10.0) -> None:
        """Until the Postgres event `seq` has been published (tests, benches)."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self.pg_done >= seq), timeout)
