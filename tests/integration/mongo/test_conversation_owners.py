"""Conversation owners on the real credit store: the first principal to log under an id owns it, also when two
principals race for a new id."""

from __future__ import annotations

import asyncio
import uuid

from stores.mongo.conversations import ConversationOwners


async def test_the_first_claim_owns_a_conversation_and_later_claims_see_it(db):
    owners = ConversationOwners(db)
    conv = f"c-{uuid.uuid4().hex}"
    assert await owners.claim(conv, "customer:a", user_id="a")
    assert await owners.claim(conv, "customer:a", user_id="a")  # the owner again
    assert not await owners.claim(conv, "support_agent:agent-1", user_id="g")
    doc = await db.conversation_owners.find_one({"_id": conv})
    assert (doc["owner"], doc["user_id"]) == ("customer:a", "a")


async def test_of_two_principals_racing_for_a_new_id_exactly_one_wins(db):
    owners = ConversationOwners(db)
    for _ in range(5):
        conv = f"race-{uuid.uuid4().hex}"
        names = [f"customer:{i}" for i in range(6)]
        won = await asyncio.gather(*(owners.claim(conv, n, user_id=n) for n in names))
        assert sum(won) == 1
        winner = names[won.index(True)]
        assert (await db.conversation_owners.find_one({"_id": conv}))["owner"] == winner
        assert [await owners.claim(conv, n, user_id=n) for n in names] == [n == winner for n in names]


async def test_a_claim_that_inserts_first_gives_the_same_answers(db):
    """`new=True` (a session trace just minted) tries the insert before any lookup: the owner still wins and
    keeps the id, and another principal's claim of it is still refused, with or without the hint."""
    owners = ConversationOwners(db)
    conv = f"s-{uuid.uuid4().hex}"
    assert await owners.claim(conv, "customer:a", user_id="a", new=True)
    assert await owners.claim(conv, "customer:a", user_id="a", new=True)
    assert not await owners.claim(conv, "customer:b", user_id="b", new=True)
    assert not await owners.claim(conv, "customer:b", user_id="b")
    assert (await db.conversation_owners.find_one({"_id": conv}))["owner"] == "customer:a"
