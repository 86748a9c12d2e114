"""The credit store's part of data-subject requests: erase a user everywhere, scan raw for leftovers, export.

Erasure deletes every document whose `user_id` is the user in every user collection (reports, scores,
disputes, plans, bureau responses, factors, conversations, prompts, feedback, predictions, training data,
embeddings metadata, traces and their observations, training opt-outs), then the AI/ML documents of *other*
owners that mention the user (their id anywhere in the document, or their personal values by fingerprint: a
support agent's conversation or trace about them, a prediction whose inputs name them), and the user's
conversation claims. Outbox events of the user become bare delete events (no data,
no user), so followers drop the documents from the search indexes and nothing of the user stays in the log.
Credit-store copies in backups are unreadable where they were encrypted (per-user keys); the rest is re-erased
by a restore (`kredete restore --replace` runs `kredete dsr reapply`). AI-log records still queued on some host
when the user is erased are dropped as they drain (`AILogger(erased=...)`, the key store's tombstones).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from bson import json_util
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from stores.fingerprints import Matcher, judge, strings
from stores.mongo.backend_keyset import MissingTable
from stores.mongo.collections import (
    CONVERSATION_OWNERS,
    EMBEDDINGS,
    FEEDBACK_SIGNALS,
    LLM_CONVERSATIONS,
    MODEL_PREDICTIONS,
    OUTBOX,
    PROMPT_HISTORY,
    SPECS,
    TRACE_OBSERVATIONS,
    TRACES,
    TRAINING_DATA,
)
from stores.mongo.credit import guard

#: Collections whose documents belong to one user (`user_id`), all of them deleted for an erased user.
USER_COLLECTIONS = tuple(s.name for s in SPECS if s.shard_key == {"user_id": 1})
#: AI/ML collections also searched for documents of other owners that mention the user.
#: Traces too: a support agent's trace (their tool calls and answers) names the customer it was about.
AI_COLLECTIONS = (LLM_CONVERSATIONS, PROMPT_HISTORY, FEEDBACK_SIGNALS, MODEL_PREDICTIONS, TRAINING_DATA, EMBEDDINGS,
                  TRACES, TRACE_OBSERVATIONS)
#: Up to this many users, documents are matched user by user: FerretDB turns `{"user_id": {"$eq": u}}` into SQL
#: but not `$in`, for which it reads and decodes every document of the collection
_ONE_BY_ONE = 64


async def _by_user(ids: Sequence[Any], field: str, act: Callable[[dict[str, Any]], Awaitable[int]]) -> int:
    """Run `act(filter)` on the users' documents (one filter per user, or one `$in` for a large batch)."""
    if len(ids) > _ONE_BY_ONE:
        return await act({field: {"$in": list(ids)}})
    return sum([await act({field: {"$eq": uid}}) for uid in ids])


def _deleter(coll: AsyncCollection) -> Callable[[dict[str, Any]], Awaitable[int]]:
    async def act(flt: dict[str, Any]) -> int:
        return (await coll.delete_many(flt)).deleted_count
    return act


#: Reads every document of a collection straight from FerretDB's storage (`BackendKeyset.documents`).
RawReader = Callable[[str], AsyncIterator[dict[str, Any]]]


def _text(doc: dict[str, Any]) -> list[str]:
    """Every string of a document, its ids included (raw BSON types as their JSON text)."""
    return list(strings(json.loads(json.dumps(doc, default=json_util.default))))


async def _every(db: AsyncDatabase, name: str, raw: RawReader | None) -> AsyncIterator[tuple[Any, list[str]]]:
    """(document, its strings) of every document of a collection: from FerretDB's storage when `raw` reads
    it (about ten times faster than FerretDB decoding each document), else through the wire protocol."""
    if raw is not None:
        try:
            async for doc in raw(name):
                yield doc, list(strings(doc))
        except MissingTable:
            return  # no such collection: nothing of anyone in it
        return
    async for doc in db[name].find({}):
        yield doc, _text(doc)


async def erase(db: AsyncDatabase, user_ids: Sequence[str],
                matchers: dict[str, Matcher] | None = None, raw: RawReader | None = None) -> dict[str, int]:
    """Delete the users' documents everywhere in the credit store; returns deletions per collection.
    Idempotent (a rerun deletes nothing). `raw`: how the AI collections are read for mentions of the users
    (FerretDB's storage, on the stack; None: through the wire protocol)."""
    ids = [str(u) for u in user_ids]
    out: dict[str, int] = {}
    for name in USER_COLLECTIONS:
        async with guard(f"erase {name}"):
            out[name] = await _by_user(ids, "user_id", _deleter(db[name]))
    mine = set(ids)
    for name in AI_COLLECTIONS:
        gone: list[Any] = []
        async with guard(f"scan {name}"):
            # every document is read anyway: a `$nin` filter would only move the test into the server
            async for doc, texts in _every(db, name, raw):
                if isinstance(doc.get("user_id"), str) and doc["user_id"] in mine:
                    continue
                verdicts = (judge(texts, uid, (matchers or {}).get(uid)) for uid in ids)
                if any(v.id_ref or v.attributable for v in verdicts):
                    gone.append(doc["_id"])
        if gone:
            async with guard(f"erase {name}"):
                out[f"{name} (mentions)"] = await _by_user(gone, "_id", _deleter(db[name]))
    async with guard(f"erase {CONVERSATION_OWNERS}"):
        # deleted, not kept ownerless: a conversation id is the client's text and may itself name the user;
        # everything logged under it was the user's and is gone, so a new claim of the id finds nothing
        drop = _deleter(db[CONVERSATION_OWNERS])
        out[CONVERSATION_OWNERS] = (await _by_user(ids, "user_id", drop)
                                    + await _by_user([f"customer:{u}" for u in ids], "owner", drop))
    async with guard("erase outbox"):
        async def bare(flt: dict[str, Any]) -> int:
            update = {"$set": {"op": "delete", "data": {}, "user_id": None}}
            return (await db[OUTBOX].update_many(flt, update)).modified_count
        out[f"{OUTBOX} (made bare deletes)"] = await _by_user(ids, "user_id", bare)
    return {k: v for k, v in out.items() if v}


async def scan(db: AsyncDatabase, user_id: str, matcher: Matcher | None) -> dict[str, dict[str, int]]:
    """Raw scan of every collection of the database: per collection, documents that name the user's id and
    documents that hold their personal data (strong, attributable weak, unattributable weak)."""
    out: dict[str, dict[str, int]] = {}
    async with guard("scan credit store"):
        names = sorted(await db.list_collection_names())
    for name in names:
        counts = {"documents": 0, "id_refs": 0, "pii": 0, "weak_unattributed": 0}
        async with guard(f"scan {name}"):
            async for doc in db[name].find({}):
                counts["documents"] += 1
                v = judge(_text(doc), user_id, matcher)
                counts["id_refs"] += v.id_ref
                counts["pii"] += v.attributable
                counts["weak_unattributed"] += bool(v.kinds) and not v.attributable
        out[name] = counts
    return out


async def export(db: AsyncDatabase, user_id: str,
                 reveal: Callable[[str, dict[str, Any]], Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every document of the user per collection (`reveal(collection, doc)` decrypts in place)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in USER_COLLECTIONS:
        async with guard(f"export {name}"):
            docs = await db[name].find({"user_id": {"$eq": user_id}}).sort("_id", 1).to_list(None)
        for doc in docs:
            if reveal is not None:
                await reveal(name, doc)
        out[name] = docs
    return out
