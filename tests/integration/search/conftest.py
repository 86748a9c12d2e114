"""Fixtures for search tests: OpenSearch and Redis with a unique index prefix per session; a scratch credit
store and payments database for the feeds."""

from __future__ import annotations

import os
import uuid

import pytest

from config.settings import resolve

# Fixtures of the Mongo and Postgres suites (servers, scratch databases), used by the feed tests here.
from tests.integration.mongo.conftest import mongo_url  # noqa: F401
from tests.integration.postgres.conftest import (  # noqa: F401
    agent_store,
    cipher,
    pg_db,
    pg_stack,
    pg_template,
    service_store,
)


@pytest.fixture(scope="session")
def search_stack():
    """OpenSearch + Redis up; the ones this session started are stopped at the end."""
    from kredete import stack as local_stack

    wanted = ["opensearch", "redis"]
    before = {s.name for s in local_stack.status(wanted) if s.healthy}
    local_stack.up(wanted)
    yield
    if os.environ.get("KREDETE_KEEP_STACK") != "1":
        started = [n for n in wanted if n not in before]
        if started:
            local_stack.down(started)


@pytest.fixture(scope="session")
def search_settings(search_stack):
    return resolve()


@pytest.fixture(scope="session")
async def search_store(search_settings):
    from stores.search import SearchStore

    prefix = f"kredete-test-{uuid.uuid4().hex[:8]}"
    store = await SearchStore(search_settings.opensearch_url.get_secret_value(), prefix=prefix).connect()
    yield store
    await _drop_prefix(store)
    await store.close()


async def _drop_prefix(store) -> None:
    await store.os.indices.delete(index=f"{store.prefix}-*", expand_wildcards="all", ignore_unavailable=True)
    templates = await store.os.indices.get_index_template(name=f"{store.prefix}-*", ignore=404)
    for t in templates.get("index_templates", []):
        await store.os.indices.delete_index_template(name=t["name"])


@pytest.fixture
async def own_search(search_settings):
    """A SearchStore with a prefix of its own (exact counts, other index settings), dropped afterwards."""
    from stores.search import SearchStore

    store = await SearchStore(search_settings.opensearch_url.get_secret_value(),
                              prefix=f"kredete-test-{uuid.uuid4().hex[:8]}").connect()
    yield store
    await _drop_prefix(store)
    await store.close()


@pytest.fixture(scope="session")
async def cache_store(search_settings):
    from stores.cache import CacheStore

    cache = await CacheStore(search_settings.redis_url.get_secret_value()).connect()
    yield cache
    await cache.close()


@pytest.fixture(scope="session")
def encoder():
    """The real all-MiniLM-L6-v2 run by the configured encoder (KREDETE_ENCODER), loaded once per session
    (offline; an ONNX export is made once and cached outside the repo)."""
    from retrieval.encoder import encoder_from_settings

    return encoder_from_settings()


@pytest.fixture(scope="session")
async def kb_index(search_store, encoder):
    """The knowledge base ingested into this session's index."""
    from guards.redaction import redact
    from retrieval.ingest import Ingestor
    from retrieval.sources import KbSource

    ingestor = Ingestor(search_store, encoder, redact=redact)
    report = await ingestor.run(KbSource(), resume=False)
    assert report.docs_skipped == 0, report.skipped
    return report


@pytest.fixture(scope="session")
async def retriever(search_store, cache_store, encoder, kb_index):
    from retrieval.service import KnowledgeRetriever

    return KnowledgeRetriever(search_store, encoder, cache=cache_store)


# --- the credit store and the payments database, for the followers and the Postgres feeds -------------


@pytest.fixture(scope="session")
async def credit_db(mongo_url):  # noqa: F811
    """A fresh credit-store database with its schema (collections and indexes), dropped at the end."""
    from stores.mongo.client import MongoStore
    from stores.mongo.collections import ensure_schema

    store = await MongoStore(mongo_url, f"kredete_test_search_{uuid.uuid4().hex[:8]}").connect()
    await ensure_schema(store.db)
    yield store.db
    await store.client.drop_database(store.db.name)
    await store.close()
