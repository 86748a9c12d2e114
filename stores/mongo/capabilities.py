"""Probe which MongoDB features the connected server really supports (in a scratch collection)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

FEATURES = ("json_schema", "ttl_index", "unique_index", "partial_index", "collation", "change_streams",
            "transactions", "time_series")


async def _ok(fn: Callable[[], Awaitable[object]]) -> bool:
    try:
        await fn()
        return True
    except (OperationFailure, PyMongoError, NotImplementedError):
        return False


async def probe(db: AsyncDatabase) -> dict[str, bool]:
    """`{feature: supported}` for FEATURES; leaves nothing behind."""
    tag = secrets.token_hex(4)
    scratch = [f"_probe_{tag}_{i}" for i in range(5)]
    out: dict[str, bool] = {}
    try:
        async def json_schema() -> None:
            c = await db.create_collection(scratch[0], validator={"$jsonSchema": {"bsonType": "object",
                                                                                  "required": ["a"]}})
            try:
                await c.insert_one({"b": 1})
            except OperationFailure:
                return  # rejected: enforced
            raise NotImplementedError("validator accepted but not enforced")

        async def unique() -> None:
            c = db[scratch[1]]
            await c.create_index("a", unique=True)
            await c.insert_one({"a": 1})
            try:
                await c.insert_one({"a": 1})
            except DuplicateKeyError:
                return
            raise NotImplementedError("unique index not enforced")

        async def change_streams() -> None:
            async with await db[scratch[1]].watch(max_await_time_ms=1) as s:
                await s.try_next()

        async def transactions() -> None:
            async with db.client.start_session() as s, await s.start_transaction():
                await db[scratch[1]].insert_one({"a": 2}, session=s)

        out["json_schema"] = await _ok(json_schema)
        out["ttl_index"] = await _ok(lambda: db[scratch[2]].create_index("t", expireAfterSeconds=1))
        out["unique_index"] = await _ok(unique)
        out["partial_index"] = await _ok(lambda: db[scratch[2]].create_index(
            "p", partialFilterExpression={"p": {"$exists": True}}))
        out["collation"] = await _ok(lambda: db[scratch[2]].create_index(
            "c", collation={"locale": "en", "strength": 2}))
        out["change_streams"] = await _ok(change_streams)
        out["transactions"] = await _ok(transactions)
        out["time_series"] = await _ok(lambda: db.create_collection(
            scratch[3], timeseries={"timeField": "t", "metaField": "m"}))
    finally:
        for name in scratch:
            await db.drop_collection(name)
    return out
