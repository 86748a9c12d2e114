"""The erasure's scan of the AI collections read from FerretDB's storage (the reader role) finds the same
documents as the scan through the wire protocol, and reads documents back with their ids' types."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from stores.mongo.backend_keyset import MissingTable
from stores.mongo.client import MongoStore
from stores.mongo.erasure import erase


@pytest.fixture
async def reader_store(open_reader_store):
    return await open_reader_store("raw")


def _world() -> tuple[str, str, list[dict]]:
    """Documents of two customers and a support agent: the agent's trace names the first customer in its
    arguments, a prediction names them in its inputs with a phone number stored as a number."""
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    at = datetime(2026, 11, 1, tzinfo=UTC)
    docs = [
        {"_id": ObjectId(), "user_id": alice, "text": "my card", "created_at": at},
        {"_id": str(uuid.uuid4()), "user_id": bob, "text": "my loan", "created_at": at},
        {"_id": str(uuid.uuid4()), "user_id": None, "principal": {"role": "support_agent", "id": "agent-7"},
         "arguments": {"query": f"disputes of {alice}", "k": 5}, "created_at": at},
        {"_id": ObjectId(), "user_id": "agent-7", "inputs": {"customer": {"id": alice.replace("-", "")},
                                                             "phone": 2348031234567}, "created_at": at},
        {"_id": str(uuid.uuid4()), "user_id": "agent-7", "arguments": {"query": f"loan of {bob}"}, "created_at": at},
    ]
    return alice, bob, docs


async def test_documents_come_back_with_their_values_and_id_types(reader_store):
    _, _, docs = _world()
    await reader_store.db["trace_observations"].insert_many([dict(d) for d in docs])
    got = {str(d["_id"]): d async for d in reader_store.keyset.documents("trace_observations")}
    assert set(got) == {str(d["_id"]) for d in docs}
    for d in docs:
        raw = got[str(d["_id"])]
        assert type(raw["_id"]) is type(d["_id"])
        assert "$s" not in raw and raw.get("user_id") == d.get("user_id")
    assert got[str(docs[3]["_id"])]["inputs"]["phone"] == 2348031234567
    # in pages of two (three pages, the last one short), each document exactly once
    paged = [str(d["_id"]) async for d in reader_store.keyset.documents("trace_observations", batch=2)]
    assert sorted(paged) == sorted(got) and len(paged) == len(docs)
    with pytest.raises(MissingTable):
        [d async for d in reader_store.keyset.documents("no_such_collection")]


async def test_the_raw_scan_erases_what_the_wire_scan_erases(mongo_url, reader_store):
    alice, bob, docs = _world()
    wire = await MongoStore(mongo_url, f"kredete_test_raw_{secrets.token_hex(4)}").connect()
    try:
        for store in (reader_store, wire):
            await store.db["trace_observations"].insert_many([dict(d) for d in docs])
            await store.db["feedback_signals"].insert_many([{"_id": str(uuid.uuid4()), "user_id": bob}])
        by_raw = await erase(reader_store.db, [alice], raw=reader_store.keyset.documents)
        by_wire = await erase(wire.db, [alice])
        assert by_raw == by_wire
        assert by_raw["trace_observations (mentions)"] == 2  # the agent's trace and the prediction naming her
        for store in (reader_store, wire):
            left = await store.db["trace_observations"].find({}).to_list(None)
            assert {str(d["_id"]) for d in left} == {str(docs[1]["_id"]), str(docs[4]["_id"])}
            assert await store.db["feedback_signals"].count_documents({}) == 1
    finally:
        await wire.drop_database()
        await wire.close()
