"""Training data in the credit store: the examples of a dataset (`training_data`, replaced as a whole on each
export of that dataset) and the customers who opted out of training use (`training_optouts`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from stores.errors import StoreUnavailable
from stores.mongo import collections as names
from stores.mongo.client import MongoStore
from stores.mongo.documents import TrainingExample
from stores.mongo.trace_documents import TrainingOptOut


class TrainingRepository:
    def __init__(self, store: MongoStore | AsyncDatabase) -> None:
        self._source = store

    @property
    def db(self) -> AsyncDatabase:
        return self._source.db if isinstance(self._source, MongoStore) else self._source

    async def opted_out(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users opted out of training use."""
        ids = sorted(set(user_ids))
        if not ids:
            return set()
        try:
            rows = await self.db[names.TRAINING_OPTOUTS].find({"_id": {"$in": ids}}, {"_id": 1}).to_list(None)
        except PyMongoError as exc:
            raise StoreUnavailable(f"training opt-outs unreadable ({type(exc).__name__})", store="mongo") from exc
        return {r["_id"] for r in rows}

    async def set_opted_out(self, user_id: str, opted_out: bool) -> bool:
        """Record (or withdraw) a user's opt-out; True when something changed."""
        coll = self.db[names.TRAINING_OPTOUTS]
        try:
            if opted_out:
                doc = TrainingOptOut(_id=user_id, user_id=user_id).to_mongo()
                res = await coll.update_one({"_id": {"$eq": user_id}}, {"$setOnInsert": doc}, upsert=True)
                return res.upserted_id is not None
            res = await coll.delete_one({"_id": {"$eq": user_id}})
            return res.deleted_count == 1
        except PyMongoError as exc:
            raise StoreUnavailable(f"training opt-out not written ({type(exc).__name__})", store="mongo") from exc

    async def replace_dataset(self, dataset: str, examples: Sequence[TrainingExample]) -> int:
        """The dataset's examples become exactly `examples` (an export run again replaces its dataset)."""
        coll = self.db[names.TRAINING_DATA]
        try:
            await coll.delete_many({"dataset": {"$eq": dataset}})
            if examples:
                await coll.insert_many([e.to_mongo() for e in examples], ordered=False)
        except PyMongoError as exc:
            raise StoreUnavailable(f"training data not written ({type(exc).__name__})", store="mongo") from exc
        return len(examples)

    async def dataset(self, dataset: str) -> list[dict[str, Any]]:
        try:
            return await self.db[names.TRAINING_DATA].find({"dataset": {"$eq": dataset}}).to_list(None)
        except PyMongoError as exc:
            raise StoreUnavailable(f"training data unreadable ({type(exc).__name__})", store="mongo") from exc
