"""Conversation owners: a conversation id (a trace) belongs to the first principal that logs under it.

One document per conversation, `_id` the conversation id, so a claim is one unique insert: of two principals
racing for a new id exactly one wins, and the loser reads the winner's owner. Kept without expiry, like the
feedback that refers to the conversation.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from stores.mongo import collections as names
from stores.mongo.client import MongoStore
from stores.mongo.credit import guard
from stores.mongo.documents import now


class ConversationOwners:
    def __init__(self, store: MongoStore | AsyncDatabase) -> None:
        self._source = store

    @property
    def _coll(self):
        db = self._source.db if isinstance(self._source, MongoStore) else self._source
        return db[names.CONVERSATION_OWNERS]

    async def claim(self, conversation_id: str, owner: str, *, user_id: str, new: bool = False) -> bool:
        """True when `owner` owns the conversation (it already did, or it is new and now does); False when
        another owner has it. `user_id` is the user the conversation's records are logged under. `new`: the id
        was just minted (a session trace), so the insert is tried first: one round trip instead of two, the same
        answer either way."""
        coll = self._coll
        # Through the credit store's breaker: while it is open the claim is refused at once (StoreUnavailable),
        # not after a server-selection timeout per call.
        async with guard("claim conversation", coll):
            if not new:
                found = await coll.find_one({"_id": {"$eq": conversation_id}}, {"owner": 1})
                if found is not None:
                    return found.get("owner") == owner
            try:
                await coll.insert_one({"_id": conversation_id, "owner": owner, "user_id": user_id,
                                       "created_at": now()})
                return True
            except DuplicateKeyError:  # claimed concurrently: whoever inserted first owns it
                found = await coll.find_one({"_id": {"$eq": conversation_id}}, {"owner": 1})
                return found is not None and found.get("owner") == owner
