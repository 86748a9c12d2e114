"""Collections, validators and indexes are created idempotently; the server's features are recorded."""

from __future__ import annotations

import pytest
from pymongo.errors import DuplicateKeyError

from stores.mongo.collections import SPECS, ensure_schema, shard_commands


async def test_every_collection_and_index_exists(db):
    present = set(await db.list_collection_names())
    for spec in SPECS:
        assert spec.name in present
        info = await db[spec.name].index_information()
        for model in spec.indexes:
            name = model.document["name"]
            assert name in info, f"{spec.name}.{name} missing"
            assert bool(info[name].get("unique")) == bool(model.document.get("unique"))
        if spec.ttl_field:
            assert {"ttl_expires_at", "expiry_expires_at"} & set(info), f"{spec.name} has no expiry index"


async def test_ensure_schema_is_idempotent(db):
    before = {s.name: sorted((await db[s.name].index_information()).keys()) for s in SPECS}
    report = await ensure_schema(db)
    again = await ensure_schema(db)
    assert report.created == [] and again.created == []
    after = {s.name: sorted((await db[s.name].index_information()).keys()) for s in SPECS}
    assert before == after


async def test_unique_index_enforced(db):
    doc = {"user_id": "7d7c3e5e-2f0a-4c39-9a55-0d9f4c0f1a11", "bureau": "crc_ng", "version": 1}
    await db.credit_reports.insert_one({"_id": "u1", **doc})
    with pytest.raises(DuplicateKeyError):
        await db.credit_reports.insert_one({"_id": "u2", **doc})
    await db.credit_reports.delete_many({"_id": {"$in": ["u1", "u2"]}})


async def test_schema_report_matches_server(mongo, caps):
    report = mongo.schema_report
    assert report.validators is caps["json_schema"]
    assert report.ttl is caps["ttl_index"]


@pytest.mark.needs_feature("json_schema")
async def test_server_validator_rejects_bad_document(db):
    from pymongo.errors import WriteError

    with pytest.raises(WriteError):
        await db.credit_reports.insert_one({"_id": "bad", "user_id": "not-a-uuid"})


def test_shard_commands_cover_user_collections():
    lines = shard_commands("kredete")
    assert lines[0] == 'sh.enableSharding("kredete")'
    sharded = [s for s in SPECS if s.shard_key]
    for spec in sharded:
        assert f'sh.shardCollection("kredete.{spec.name}", {{ user_id: 1 }})' in lines
        # a unique index on a sharded collection must start with the shard key
        for model in spec.indexes:
            if model.document.get("unique"):
                assert next(iter(model.document["key"])) == "user_id", (spec.name, model.document["name"])


def test_every_user_document_model_has_user_id():
    for spec in SPECS:
        if spec.model is not None:
            assert "user_id" in spec.model.model_fields, spec.name
