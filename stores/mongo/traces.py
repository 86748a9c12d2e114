"""Reading AI traces: recent traces, one trace as a tree of observations with its scores, and who owns a trace.

Writes go through the AI logger (`guards.tracing` queues them, `AILogger` buffers and retries). Everything
read here was redacted before it was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from stores.errors import NotFound, StoreUnavailable
from stores.mongo import collections as names
from stores.mongo.client import MongoStore

#: The conversation owners' collection (`stores.mongo.conversations`): the first principal to log under an id.
CONVERSATION_OWNERS = getattr(names, "CONVERSATION_OWNERS", "conversation_owners")


@dataclass
class TraceSummary:
    trace_id: str
    principal: dict[str, str]
    origin: str
    created_at: datetime
    observations: int = 0
    last_at: datetime | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    scores: int = 0


@dataclass
class TraceTree:
    trace: dict[str, Any]
    observations: list[dict[str, Any]]
    scores: list[dict[str, Any]]

    def children(self) -> dict[str | None, list[dict[str, Any]]]:
        """Observations by parent id (None: top level; an unknown parent counts as top level)."""
        ids = {o["_id"] for o in self.observations}
        out: dict[str | None, list[dict[str, Any]]] = {}
        for o in self.observations:
            parent = o.get("parent_id") if o.get("parent_id") in ids else None
            out.setdefault(parent, []).append(o)
        return out

    def scores_of(self, observation_id: str | None) -> list[dict[str, Any]]:
        """Scores on one observation; None: scores on the trace itself (or on an observation not in it)."""
        ids = {o["_id"] for o in self.observations}
        if observation_id is None:
            return [s for s in self.scores if s.get("observation_id") not in ids]
        return [s for s in self.scores if s.get("observation_id") == observation_id]


class TraceRepository:
    def __init__(self, store: MongoStore | AsyncDatabase) -> None:
        self._source = store

    @property
    def db(self) -> AsyncDatabase:
        return self._source.db if isinstance(self._source, MongoStore) else self._source

    async def recent(self, *, limit: int = 20, since: datetime | None = None,
                     principal_id: str | None = None) -> list[TraceSummary]:
        """The latest traces, newest first, with their observation and score counts."""
        if limit < 1:  # none asked for (PyMongo's to_list refuses a length below 1)
            return []
        flt: dict[str, Any] = {}
        if since is not None:
            flt["created_at"] = {"$gte": since}
        if principal_id is not None:
            flt["principal.id"] = {"$eq": principal_id}
        try:
            traces = await self.db[names.TRACES].find(flt).sort("created_at", DESCENDING).to_list(limit)
            ids = [t["_id"] for t in traces]
            obs = await self.db[names.TRACE_OBSERVATIONS].find(
                {"trace_id": {"$in": ids}}, {"trace_id": 1, "status": 1, "started_at": 1}).to_list(None)
            scores = await self.db[names.FEEDBACK_SIGNALS].find(
                {"conversation_id": {"$in": ids}}, {"conversation_id": 1}).to_list(None)
        except PyMongoError as exc:
            raise StoreUnavailable(f"traces unreadable ({type(exc).__name__})", store="mongo") from exc
        out = {t["_id"]: TraceSummary(trace_id=t["_id"], principal=t.get("principal") or {},
                                      origin=t.get("origin", ""), created_at=t["created_at"]) for t in traces}
        for o in obs:
            s = out[o["trace_id"]]
            s.observations += 1
            s.statuses[o["status"]] = s.statuses.get(o["status"], 0) + 1
            s.last_at = max(filter(None, (s.last_at, o.get("started_at"))))
        for sc in scores:
            out[sc["conversation_id"]].scores += 1
        return list(out.values())

    async def tree(self, trace_id: str) -> TraceTree:
        """One trace with every observation (in start order) and every score; NotFound when it does not exist."""
        try:
            trace = await self.db[names.TRACES].find_one({"_id": {"$eq": trace_id}})
            observations = await self.db[names.TRACE_OBSERVATIONS].find({"trace_id": {"$eq": trace_id}}).sort(
                [("started_at", ASCENDING), ("_id", ASCENDING)]).to_list(None)
            scores = await self.db[names.FEEDBACK_SIGNALS].find({"conversation_id": {"$eq": trace_id}}).sort(
                "created_at", ASCENDING).to_list(None)
        except PyMongoError as exc:
            raise StoreUnavailable(f"traces unreadable ({type(exc).__name__})", store="mongo") from exc
        if trace is None and not observations:
            raise NotFound("no such trace", store="mongo")
        if trace is None:  # observations written before their trace document (it is on its way)
            first = observations[0]
            trace = {"_id": trace_id, "principal": first.get("principal"), "user_id": first.get("user_id"),
                     "origin": "conversation", "created_at": first.get("started_at")}
        return TraceTree(trace=trace, observations=observations, scores=scores)

    async def owner(self, trace_id: str) -> str | None:
        """Who owns the trace (`customer:<user id>` or `<role>:<subject>`), from the conversation owners."""
        try:
            found = await self.db[CONVERSATION_OWNERS].find_one({"_id": {"$eq": trace_id}}, {"owner": 1})
        except PyMongoError as exc:
            raise StoreUnavailable(f"conversation owners unreadable ({type(exc).__name__})", store="mongo") from exc
        return found.get("owner") if found else None

    async def with_feedback(self, *, since: datetime, min_score: float) -> dict[str, list[dict[str, Any]]]:
        """Traces scored at least `min_score` since `since`: trace id -> its scores (the training export)."""
        try:
            rows = await self.db[names.FEEDBACK_SIGNALS].find(
                {"created_at": {"$gte": since}, "score": {"$gte": min_score}}).sort("created_at", ASCENDING).to_list(
                None)
        except PyMongoError as exc:
            raise StoreUnavailable(f"feedback unreadable ({type(exc).__name__})", store="mongo") from exc
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r["conversation_id"], []).append(r)
        return out
