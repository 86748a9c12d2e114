"""Zero-downtime rebuild: alias swap while writes, updates and deletes continue loses none of them."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from stores.errors import InvalidData
from stores.search.catalog import static_specs
from stores.search.indexes import IndexManager, IndexSpec, version_now


async def _put(store, index: str, doc_id: str, text: str, *, version: int | None = None) -> None:
    """A write as every indexer makes it: external version (newer wins), `indexed_at` stamped."""
    await store.os.index(index=index, id=doc_id, version=version or version_now(), version_type="external_gte",
                         body={"case_id": doc_id, "status": "opened", "text": text,
                               "indexed_at": datetime.now(UTC).isoformat()})


async def _ids_and_texts(store, alias: str) -> dict[str, str]:
    await store.os.indices.refresh(index=alias)
    res = await store.os.search(index=alias, body={"size": 10_000, "_source": ["text"]})
    return {h["_id"]: h["_source"].get("text") for h in res["hits"]["hits"]}


def _hooked(store, before_swap):
    """An IndexManager that runs `before_swap()` right before the alias swap: writes there land in the
    old generation after the last pre-swap catch-up, the window a rebuild most easily loses."""

    class Hooked(IndexManager):
        async def _swap(self, spec, old, new):
            await before_swap()
            await super()._swap(spec, old, new)

    return Hooked(store)


async def test_rebuild_via_alias_swap_loses_no_writes_updates_or_deletes(search_store):
    base = static_specs()["disputes"]
    spec = IndexSpec(name="reindex-probe", body=base.body)
    manager = IndexManager(search_store)
    first = await manager.ensure(spec)
    alias = manager.alias(spec)
    expected: dict[str, str] = {}
    for i in range(300):
        await _put(search_store, alias, f"c{i}", f"case {i}")
        expected[f"c{i}"] = f"case {i}"
    await search_store.os.indices.refresh(index=alias)
    stop = asyncio.Event()
    rng = random.Random(3)
    ops = {"new": 0, "update": 0, "delete": 0}

    async def writer() -> None:
        i = 300
        while not stop.is_set():
            op = rng.choice(("new", "update", "delete"))
            if op == "new":
                await _put(search_store, alias, f"c{i}", f"case {i}")
                expected[f"c{i}"] = f"case {i}"
                i += 1
            elif op == "update" and expected:
                key = rng.choice(sorted(expected))
                await _put(search_store, alias, key, f"{key} updated {ops['update']}")
                expected[key] = f"{key} updated {ops['update']}"
            elif expected:
                key = rng.choice(sorted(expected))
                await manager.delete_where(spec, {"ids": {"values": [key]}})
                del expected[key]
            ops[op] += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(writer())
    reads: list[int] = []

    async def reader() -> None:
        while not stop.is_set():
            res = await search_store.os.count(index=alias)
            reads.append(res["count"])
            await asyncio.sleep(0.01)

    rtask = asyncio.create_task(reader())
    report = await manager.rebuild(spec)
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(task, rtask)

    assert report.old_index == first and report.new_index.endswith("-000002")
    assert list(await search_store.os.indices.get_alias(name=alias)) == [report.new_index]
    assert not await search_store.os.indices.exists(index=first)
    assert await _ids_and_texts(search_store, alias) == expected
    assert min(ops.values()) > 0 and min(reads) > 0  # readers never saw an empty or missing index

    again = await manager.rebuild(spec)  # a second rebuild keeps counting generations
    assert again.new_index.endswith("-000003") and again.new_count == len(expected)


async def test_updates_and_deletes_right_before_the_swap_survive_a_copy_rebuild(search_store):
    spec = IndexSpec(name="reindex-window", body=static_specs()["disputes"].body)
    manager = IndexManager(search_store)
    await manager.ensure(spec)
    alias = manager.alias(spec)
    for i in range(100):
        await _put(search_store, alias, f"c{i}", f"case {i} v1")

    async def late_writes() -> None:
        await _put(search_store, alias, "c1", "case 1 v2")  # an update of a document already copied
        await manager.delete_where(spec, {"ids": {"values": ["c2"]}})  # a delete of one already copied
        await _put(search_store, alias, "c500", "case 500 v1")  # a new document

    report = await _hooked(search_store, late_writes).rebuild(spec)
    got = await _ids_and_texts(search_store, alias)
    assert list(await search_store.os.indices.get_alias(name=alias)) == [report.new_index]
    assert got["c1"] == "case 1 v2"
    assert "c2" not in got
    assert got["c500"] == "case 500 v1"
    assert set(got) == {f"c{i}" for i in range(100) if i != 2} | {"c500"}


async def test_deletes_and_updates_during_a_fill_rebuild_are_applied(search_store):
    """A fill reads the primary store; a delete or an update made through the alias meanwhile wins."""
    spec = IndexSpec(name="reindex-tomb", body=static_specs()["disputes"].body)
    manager = IndexManager(search_store)
    await manager.ensure(spec)
    alias = manager.alias(spec)
    for i in range(20):
        await _put(search_store, alias, f"c{i}", f"case {i} v1")

    async def fill(index: str) -> None:
        for i in range(20):  # the source as read at the start of the rebuild, with its (old) versions
            await _put(search_store, index, f"c{i}", f"case {i} v1", version=1)
        await manager.delete_where(spec, {"ids": {"values": ["c3", "c4"]}})  # deleted while the fill runs
        await _put(search_store, alias, "c5", "case 5 v2")  # updated while the fill runs

    async def before_swap() -> None:
        await manager.delete_where(spec, {"terms": {"case_id": ["c6"]}})

    await _hooked(search_store, before_swap).rebuild(spec, fill)
    got = await _ids_and_texts(search_store, alias)
    assert set(got) == {f"c{i}" for i in range(20)} - {"c3", "c4", "c6"}
    assert got["c5"] == "case 5 v2"
    # a document written again after its delete is kept by the next rebuild
    await manager.delete_where(spec, {"ids": {"values": ["c7"]}})
    await _put(search_store, alias, "c7", "case 7 back")
    again = await manager.rebuild(spec)
    assert (await _ids_and_texts(search_store, alias))["c7"] == "case 7 back" and again.new_count == 17


async def test_rebuild_from_a_filler(search_store):
    spec = IndexSpec(name="reindex-fill", body=static_specs()["users"].body)
    manager = IndexManager(search_store)
    await manager.ensure(spec)

    async def fill(index: str) -> None:
        lines = []
        for i in range(50):
            lines += [{"index": {"_index": index, "_id": f"u{i}"}}, {"user_id": f"u{i}", "status": "active"}]
        await search_store.os.bulk(body=lines)

    report = await manager.rebuild(spec, fill)
    assert report.new_count == 50


async def test_a_newer_schema_version_adds_its_fields_in_place(search_store):
    """The audit-log family went to schema v2 (`redactions`): an index built at v1 takes it on ensure()."""
    v2 = static_specs()["audit-logs"]
    assert v2.schema_version == 2 and "redactions" in v2.body["mappings"]["properties"]
    v1_body = {"settings": v2.body["settings"], "mappings": {**v2.body["mappings"], "properties": {
        k: v for k, v in v2.body["mappings"]["properties"].items() if k != "redactions"}}}
    manager = IndexManager(search_store)
    index = await manager.ensure(IndexSpec(name="schema-probe", body=v1_body, schema_version=1))
    alias = manager.alias(IndexSpec(name="schema-probe", body=v1_body))
    doc = {"audit_id": "1", "action": "x", "redactions": {"PHONE": 1}}
    with pytest.raises(InvalidData):  # strict v1 mapping: no such field yet
        await search_store.call(search_store.os.index(index=alias, id="1", body=doc))
    assert await manager.ensure(IndexSpec(name="schema-probe", body=v2.body, schema_version=2)) == index
    await search_store.call(search_store.os.index(index=alias, id="1", body=doc, refresh=True))
    meta = await manager.meta(IndexSpec(name="schema-probe", body=v2.body))
    assert meta["schema_version"] == 2
    assert (await search_store.os.get(index=alias, id="1"))["_source"]["redactions"] == {"PHONE": 1}


async def _tombstone_ids(store, manager: IndexManager, spec: IndexSpec) -> set[str]:
    await store.os.indices.refresh(index=manager.state_alias)
    res = await store.os.search(index=manager.state_alias, body={
        "size": 100, "query": {"bool": {"filter": [{"term": {"kind": "tombstone"}}, {"term": {"source": spec.name}}]}}})
    return {h["_id"] for h in res["hits"]["hits"]}


async def test_old_tombstones_are_pruned_unless_a_running_rebuild_may_need_them(own_search, caplog):
    from datetime import timedelta

    from stores.search.indexes import TOMBSTONE_MARGIN, TOMBSTONE_TTL, _iso

    store = own_search
    spec = static_specs()["disputes"]
    manager = IndexManager(store)
    await manager.ensure(spec)
    await manager._ensure_state()
    now = datetime.now(UTC)

    async def tombstone(name: str, age: timedelta) -> None:
        await store.os.index(index=manager.state_alias, id=f"tombstone:{name}", body={
            "kind": "tombstone", "source": spec.name, "at": _iso(now - age), "counts": {"query": {}}})

    await tombstone("old", TOMBSTONE_TTL + timedelta(minutes=30))
    await tombstone("fresh", timedelta(minutes=1))
    # no rebuild running (the usual case): the old tombstone goes, and the absent marker is not a warning
    await store.os.indices.refresh(index=manager.state_alias)  # delete_by_query sees the refreshed state
    seen = len(caplog.records)
    with caplog.at_level("WARNING", logger="opensearch"):
        await manager.prune_tombstones(spec)
    assert await _tombstone_ids(store, manager, spec) == {"tombstone:fresh"}
    assert not [r.getMessage() for r in caplog.records[seen:] if r.name == "opensearch"]

    # a rebuild that started two hours ago still needs what was deleted since its start (less the margin)
    started = now - timedelta(hours=2)
    await store.os.index(index=manager.state_alias, id=f"rebuild:{spec.name}",
                         body={"kind": "rebuild", "source": spec.name, "at": _iso(started)})
    await tombstone("during-rebuild", timedelta(hours=1, minutes=30))
    await tombstone("before-rebuild", timedelta(hours=2) + TOMBSTONE_MARGIN + timedelta(minutes=10))
    await store.os.indices.refresh(index=manager.state_alias)
    await manager.prune_tombstones(spec)
    assert await _tombstone_ids(store, manager, spec) == {"tombstone:fresh", "tombstone:during-rebuild"}
