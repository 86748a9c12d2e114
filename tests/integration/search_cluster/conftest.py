"""Fixtures of the search-cluster tests: a store on the stack's search (one node or the ha cluster) with a
prefix of its own, and a scratch three-node cluster of their own (own ports and data dirs)."""

from __future__ import annotations

import uuid

import pytest

from config.settings import resolve


@pytest.fixture(scope="module")
def search_up(session_stack):
    """The stack's search (and S3, for the snapshots) up."""
    session_stack.need(["opensearch", "s3"])
    return resolve()


async def drop_prefix(store) -> None:
    await store.os.indices.delete(index=f"{store.prefix}-*", expand_wildcards="all", ignore_unavailable=True)
    templates = await store.os.indices.get_index_template(name=f"{store.prefix}-*", ignore=404)
    for t in templates.get("index_templates", []):
        await store.os.indices.delete_index_template(name=t["name"])


@pytest.fixture
async def store_factory(search_up):
    """SearchStores with prefixes of their own (`replicas` as asked), dropped afterwards."""
    from stores.search import SearchStore

    made = []

    async def make(replicas: int | None = None, url: str | None = None):
        store = await SearchStore(url or search_up.opensearch_url.get_secret_value(),
                                  prefix=f"kredete-test-{uuid.uuid4().hex[:8]}", replicas=replicas).connect()
        made.append(store)
        return store

    yield make
    for store in made:
        await drop_prefix(store)
        await store.close()


@pytest.fixture(scope="module")
def scratch_cluster():
    """Three small nodes of a cluster of their own (`kredete-test`), bootstrapped afresh, stopped at the end.

    They are stopped at the end whatever KREDETE_KEEP_STACK says: three JVMs are too much to leave behind.
    """
    from kredete.stack.opensearch_cluster import SearchCluster, test_cluster

    cluster = SearchCluster(test_cluster())
    cluster.reset()  # a new cluster each run; the last run's data and logs stay until then
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
