"""Replica counts from settings on the stack's search, the multi-node client, and snapshots to S3.

Runs on whatever the stack's profile runs (one node or the ha cluster).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from stores.errors import InvalidData, NotFound
from stores.search.catalog import static_specs
from stores.search.indexes import IndexManager


async def _replicas(store, index: str) -> int:
    res = await store.os.indices.get_settings(index=index, name="index.number_of_replicas")
    return int(res[index]["settings"]["index"]["number_of_replicas"])


async def test_more_replicas_than_nodes_allow_is_created_yellow_with_a_warning(store_factory, caplog):
    probe = await store_factory()
    nodes = (await probe.cluster_health()).number_of_data_nodes
    store = await store_factory(replicas=nodes)  # needs nodes + 1 data nodes
    spec = static_specs()["disputes"]
    with caplog.at_level(logging.WARNING, logger="kredete.search"):
        index = await IndexManager(store).ensure(spec)
    warning = next(r.getMessage() for r in caplog.records if r.name == "kredete.search")
    assert f"asks for {nodes} replica(s), which needs {nodes + 1} data nodes" in warning and "yellow" in warning
    for _ in range(120):  # every node takes one copy, then the allocation settles
        health = await store.cluster_health(index, wait_for="yellow", timeout_s=30)
        if health.active_shards == nodes and not health.initializing_shards:
            break
        await asyncio.sleep(0.5)
    assert health.status == "yellow" and health.active_shards == nodes and health.unassigned_shards == 1
    # still serves reads and writes from its primary
    await store.os.index(index=store.index_name(spec.name), id="c1", body={"case_id": "c1", "status": "opened"},
                         refresh=True)
    assert (await store.os.count(index=index))["count"] == 1


async def test_an_existing_index_takes_a_new_replica_count_by_a_settings_update(store_factory):
    store = await store_factory(replicas=0)
    spec = static_specs()["users"]
    index = await IndexManager(store).ensure(spec)
    assert await _replicas(store, index) == 0
    nodes = (await store.cluster_health()).number_of_data_nodes
    store.replicas = nodes - 1  # what KREDETE_SEARCH_REPLICAS would now say
    changed = await store.set_replicas()
    if nodes > 1:
        assert changed == {index: (0, nodes - 1)}
        assert await _replicas(store, index) == nodes - 1
        assert (await store.cluster_health(index, wait_for="green", timeout_s=60)).status == "green"
    else:
        assert changed == {}
    # and a rebuild (`kredete search reindex`) creates its new generation with the store's count
    store.replicas = 0
    report = await IndexManager(store).rebuild(spec)
    assert await _replicas(store, report.new_index) == 0


async def test_the_client_goes_past_a_node_that_does_not_answer(store_factory, search_up):
    live = search_up.opensearch_url.get_secret_value()
    store = await store_factory(url=f"http://127.0.0.1:1,{live}")  # the first node refuses every connection
    for _ in range(6):  # round robin: every other call starts at the dead node
        assert (await store.cluster_health()).status in ("green", "yellow")


async def test_no_node_answering_is_a_clear_search_error(store_factory):
    from stores.search import SearchStore
    from stores.search.client import SearchUnavailable

    store = SearchStore("http://127.0.0.1:1,http://127.0.0.1:2", timeout=1.0)
    with pytest.raises(SearchUnavailable) as info:
        await store.connect()
    assert "search is temporarily unavailable: no search node answers" in info.value.public_message
    assert "tools that do not need search still work" in info.value.public_message


async def test_a_snapshot_in_the_backups_bucket_restores_the_indexes(store_factory, search_up):
    import uuid

    from stores.search.snapshots import SnapshotRepository

    store = await store_factory()
    spec = static_specs()["disputes"]
    manager = IndexManager(store)
    index = await manager.ensure(spec)
    alias = store.index_name(spec.name)
    for i in range(5):
        await store.os.index(index=alias, id=f"c{i}", body={"case_id": f"c{i}", "status": "opened"})
    await store.os.indices.refresh(index=alias)
    repo = SnapshotRepository(store, f"{search_up.s3_bucket_prefix}-backups",
                              base_path=f"opensearch/tests/{uuid.uuid4().hex[:8]}")
    where = await repo.ensure()
    assert where.startswith(f"s3://{search_up.s3_bucket_prefix}-backups/opensearch/tests/")
    snap = await repo.create("t1")
    assert snap.state == "SUCCESS" and index in snap.indices

    # a restore never overwrites silently
    with pytest.raises(InvalidData, match="would overwrite"):
        await repo.restore("t1")
    beside = await repo.restore("t1", rename_prefix="restored-", indices=[index])
    assert beside.indices == [f"restored-{index}"] and beside.documents == 5
    await store.os.indices.delete(index=f"restored-{index}")

    # the index lost (documents deleted and a new generation behind the alias): replace brings it back
    await store.os.delete(index=alias, id="c0", refresh=True)
    await manager.rebuild(spec)
    report = await repo.restore("t1", replace=True, indices=[index])
    assert report.documents == 5
    assert list(await store.os.indices.get_alias(name=alias)) == [index]
    assert (await store.os.get(index=alias, id="c0"))["_source"]["case_id"] == "c0"
    with pytest.raises(NotFound):
        await repo.get("no-such-snapshot")
    await repo.delete("t1")


async def test_a_red_index_says_so_without_opening_the_stores_breaker(store_factory):
    """A red index is the cluster's answer about that index: its searches fail with the red-index message,
    while the store's circuit breaker stays closed and the other indexes are searched as before."""
    from guards.pipeline import safe_message
    from stores.search.client import SearchUnavailable

    store = await store_factory()
    red, fine = store.index_name("red"), store.index_name("fine")
    # a primary that can be placed on no node: the index is created red
    await store.os.indices.create(index=red, wait_for_active_shards=0, body={"settings": {
        "number_of_replicas": 0, "index.routing.allocation.require._name": "no-such-node"}})
    await store.os.index(index=fine, id="x", body={"text": "still here"}, refresh=True)
    for _ in range(store.breaker.failures + 2):
        with pytest.raises(SearchUnavailable) as info:
            await store.call(store.os.search(index=red, body={"query": {"match_all": {}}}))
        assert not info.value.outage
        assert "status red" in safe_message(info.value)[1]
    assert store.breaker.state == "closed"
    res = await store.call(store.os.search(index=fine, body={"query": {"match_all": {}}}))
    assert res["hits"]["total"]["value"] == 1
