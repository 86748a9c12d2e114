"""Mongo fixtures: only the Mongo server of the stack, and a throwaway database per test module."""

from __future__ import annotations

import secrets

import pytest

from config.settings import resolve
from stores.mongo.client import MongoStore


@pytest.fixture(scope="session")
def mongo_url(session_stack) -> str:
    """The stack's Mongo server (and the PostgreSQL it keeps its data in), started if needed; what this
    session started is stopped at its end."""
    session_stack.need(["mongo"])
    return resolve().mongo_url.get_secret_value()


@pytest.fixture(scope="session")
def master_key() -> str:
    return resolve().field_encryption_master_key.get_secret_value()


@pytest.fixture(scope="session")
async def caps(mongo_url) -> dict[str, bool]:
    """What the server supports, probed once."""
    from stores.mongo.capabilities import probe

    store = await MongoStore(mongo_url, f"kredete_test_probe_{secrets.token_hex(4)}").connect()
    try:
        return await probe(store.db)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


@pytest.fixture(autouse=True)
def _needs_feature(request, caps):
    marker = request.node.get_closest_marker("needs_feature")
    if marker and not caps.get(marker.args[0], False):
        pytest.skip(f"the local MongoDB-wire server lacks {marker.args[0]} (FerretDB 1.x)")


@pytest.fixture(scope="module")
async def mongo(mongo_url):
    """A connected MongoStore on a fresh `kredete_test_<random>` database with the schema applied."""
    from stores.mongo.collections import ensure_schema

    store = await MongoStore(mongo_url, f"kredete_test_{secrets.token_hex(4)}").connect()
    store.schema_report = await ensure_schema(store.db)  # type: ignore[attr-defined]
    yield store
    await store.client.drop_database(store.db.name)
    await store.close()


@pytest.fixture(scope="module")
async def open_reader_store(mongo_url):
    """Opens a MongoStore on a fresh `kredete_test_<prefix>_<random>` database with the schema applied, whose
    `keyset` reads FerretDB's tables as the `ferretdb_reader` role, as the MCP server's adapters do; skips the
    test unless the server is FerretDB on PostgreSQL. What it opened is dropped and closed at the module's end."""
    from stores.mongo.collections import ensure_schema
    from stores.mongo.pushdown import Backend, detect_backend

    opened: list[MongoStore] = []

    async def open_(prefix: str) -> MongoStore:
        reader = resolve().ferretdb_reader_url
        if reader is None:
            pytest.skip("no FerretDB reader URL (an external MongoDB-wire server)")
        store = await MongoStore(mongo_url, f"kredete_test_{prefix}_{secrets.token_hex(4)}",
                                 backend_url=reader.get_secret_value()).connect()
        opened.append(store)
        await ensure_schema(store.db)
        if await detect_backend(store.db) is not Backend.FERRETDB_POSTGRESQL:
            pytest.skip("not FerretDB on PostgreSQL")
        return store

    yield open_
    for store in opened:
        await store.drop_database()
        await store.close()


@pytest.fixture(scope="module")
def db(mongo):
    return mongo.db


@pytest.fixture(scope="module")
async def encryption(db, master_key):
    from stores.mongo.encryption import open_field_encryption

    enc = await open_field_encryption(db, master_key)
    yield enc
    await enc.close()
