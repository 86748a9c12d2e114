"""The per-process copy of known PII (pure logic, a fake lookup and clock): served only while the invalidation
channel is followed, at most `ttl_s` old, dropped by a message naming the user, and a lookup that raced an
invalidation is never kept."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

from guards.known_pii import KnownPiiCache, users_named


class Source:
    def __init__(self) -> None:
        self.names: dict[UUID, str] = {}
        self.asked: list[list[UUID]] = []
        self.gate: asyncio.Event | None = None

    async def known_pii(self, user_ids: list[UUID]) -> dict[UUID, dict[str, list[str]]]:
        self.asked.append(list(user_ids))
        if self.gate is not None:
            await self.gate.wait()
        return {u: {"names": [self.names[u]], "addresses": []} for u in user_ids if u in self.names}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _names(got: dict, uid: UUID) -> list[str]:
    return got[uid]["names"] if uid in got else []


def test_copies_are_served_while_followed_and_dropped_by_a_message_naming_the_user():
    async def go():
        src, clock, live = Source(), Clock(), [True]
        a, b = uuid4(), uuid4()
        src.names.update({a: "Ama Mensah", b: "Kofi Owusu"})
        cache = KnownPiiCache(src, live=lambda: live[0], ttl_s=30, clock=clock)
        assert _names(await cache.known_pii([a, b]), a) == ["Ama Mensah"]
        src.names[a] = "Ama Boateng"  # changed in the database, not announced yet
        assert _names(await cache.known_pii([a]), a) == ["Ama Mensah"] and len(src.asked) == 1
        cache.drop_keys([f"cache:{{{a}}}:profile"])  # the announcement
        assert _names(await cache.known_pii([a, b]), a) == ["Ama Boateng"]
        assert src.asked[-1] == [a]  # b was still held
        # Not older than ttl_s: an unannounced change is seen once the copy has aged out.
        src.names[b] = "Kofi Mensah"
        clock.now += 29.9
        assert _names(await cache.known_pii([b]), b) == ["Kofi Owusu"]
        clock.now += 0.2
        assert _names(await cache.known_pii([b]), b) == ["Kofi Mensah"]
        # Channel not followed (Redis down, resubscribing): nothing served from or kept in the process.
        live[0] = False
        src.names[b] = "Kofi Asante"
        asked = len(src.asked)
        assert _names(await cache.known_pii([b]), b) == ["Kofi Asante"]
        assert _names(await cache.known_pii([b]), b) == ["Kofi Asante"]
        assert len(src.asked) == asked + 2 and len(cache) == 0

    asyncio.run(go())


def test_a_lookup_in_flight_during_an_invalidation_is_answered_but_not_kept():
    async def go():
        src, a = Source(), uuid4()
        src.names[a] = "Ama Mensah"
        cache = KnownPiiCache(src, live=lambda: True, ttl_s=30)
        src.gate = asyncio.Event()
        pending = asyncio.ensure_future(cache.known_pii([a]))
        await asyncio.sleep(0)
        cache.drop([a])  # the change was announced while the lookup read the old value
        src.gate.set()
        assert _names(await pending, a) == ["Ama Mensah"]
        assert len(cache) == 0
        src.names[a] = "Ama Boateng"
        assert _names(await cache.known_pii([a]), a) == ["Ama Boateng"]

    asyncio.run(go())


def test_bounded_and_unknown_users_not_kept():
    async def go():
        src = Source()
        ids = [uuid4() for _ in range(10)]
        src.names.update({u: f"Name {i}" for i, u in enumerate(ids)})
        cache = KnownPiiCache(src, live=lambda: True, max_users=4)
        await cache.known_pii(ids)
        assert len(cache) == 4
        ghost = uuid4()
        assert await cache.known_pii([ghost]) == {}
        assert await cache.known_pii([ghost]) == {} and src.asked[-2:] == [[ghost], [ghost]]

    asyncio.run(go())


def test_users_named_by_invalidation_keys():
    a, b = uuid4(), uuid4()
    assert users_named([f"cache:{{{a}}}:profile", f"cache:{{{b}}}:score", "cache:{fx:USD-NGN}:rate"]) == {a, b}
