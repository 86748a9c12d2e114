"""Invalidation messages over Redis pub/sub, and the subscriber every process runs.

A message is JSON `{"keys": [...], "event": "<event id>"}` on `inval:events`. On a cluster a PUBLISH reaches
every node, so the subscriber listens on any one node and moves to another when that one fails.

A subscriber that is not connected cannot know what changed meanwhile, so it never lets its process serve
local copies then: on every (re)subscription and on every disconnection it calls `on_reset` (drop everything
held; the next reads go to Redis, which the publisher keeps current from the outbox), and `connected` is
clear until it is subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from stores.cache.client import INVALIDATION_CHANNEL, CacheStore, redis_errors
from stores.cache.metrics import INVALIDATIONS

log = logging.getLogger("kredete.cache.pubsub")


def invalidation_message(keys: list[str], event_id: str | None = None, at: float | None = None) -> str:
    """`at` (epoch seconds of the change) lets subscribers measure the lag."""
    return json.dumps({"keys": keys, "event": event_id, "at": at}, separators=(",", ":"))


async def publish_invalidation(store: CacheStore, keys: list[str], event_id: str | None = None,
                               at: float | None = None) -> int:
    return await store.publish(INVALIDATION_CHANNEL, invalidation_message(keys, event_id, at))


class InvalidationSubscriber:
    """Listens for invalidation messages and hands their keys to `on_keys`; `on_reset` on every (re)connection
    and disconnection. `on_message(payload, received_at)` sees every parsed message (lag measurement)."""

    def __init__(self, store: CacheStore, *, on_keys: Callable[[list[str]], None], on_reset: Callable[[], None],
                 on_message: Callable[[dict, float], None] | None = None, channel: str = INVALIDATION_CHANNEL,
                 retry_s: float = 0.2) -> None:
        self.store = store
        self.on_keys = on_keys
        self.on_reset = on_reset
        self.on_message = on_message
        self.channel = channel
        self.retry_s = retry_s
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.received = 0
        self._task: asyncio.Task | None = None
        self._client: aioredis.Redis | None = None

    async def start(self, *, wait_s: float = 5.0) -> InvalidationSubscriber:
        """Start listening; waits up to `wait_s` for the first subscription (it keeps trying after that)."""
        self._task = asyncio.create_task(self._run(), name="cache-invalidation-subscriber")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), wait_s)
        return self

    async def stop(self) -> None:
        """Stop listening: from here on nothing is followed, so `connected` is clear and local copies go."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None
        await self._drop_client()
        if self.connected.is_set():
            self.connected.clear()
            self.on_reset()

    def _nodes(self) -> list[tuple[str, int]]:
        client = self.store.client
        if self.store.cluster and client is not None and hasattr(client, "get_nodes"):
            nodes = [(n.host, int(n.port)) for n in client.get_nodes()]
            if nodes:
                return nodes
        return []

    def _connect(self, attempt: int) -> aioredis.Redis:
        # The service URL's credentials, on one node (a cluster's nodes take turns after failures).
        url = self.store._url
        nodes = self._nodes()
        if nodes:
            host, port = nodes[attempt % len(nodes)]
            return aioredis.from_url(url, host=host, port=port, decode_responses=True, socket_connect_timeout=2,
                                     health_check_interval=5)
        return aioredis.from_url(url, decode_responses=True, socket_connect_timeout=2, health_check_interval=5)

    async def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen(attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure (Redis, socket, parsing): reset, then retry
                if self.connected.is_set():
                    log.warning("cache invalidation subscription lost (%s); local copies dropped until it is back",
                                type(exc).__name__)
            self.connected.clear()
            self.on_reset()
            await self._drop_client()
            attempt += 1
            await asyncio.sleep(self.retry_s)

    async def _listen(self, attempt: int) -> None:
        self._client = self._connect(attempt)
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        with redis_errors("Redis subscribe"):
            await pubsub.subscribe(self.channel)
        try:
            # Subscribed: whatever changed while we were not listening is unknown, so drop it all now.
            self.on_reset()
            INVALIDATIONS.labels(source="reconnect").inc()
            if attempt:
                self.reconnects += 1
            self.connected.set()
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None:
                    # No traffic: prove the connection still works (a dead node would hang us forever).
                    await pubsub.ping()
                    continue
                if msg.get("type") != "message":
                    continue
                received = time.time()
                try:
                    payload = json.loads(msg["data"])
                    keys = [str(k) for k in payload.get("keys", [])]
                except (ValueError, TypeError, AttributeError):
                    log.warning("ignored a malformed invalidation message")
                    continue
                self.received += 1
                INVALIDATIONS.labels(source="event").inc()
                self.on_keys(keys)
                if self.on_message is not None:
                    self.on_message(payload, received)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
