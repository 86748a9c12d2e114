"""Zero-downtime rebuild: alias swap while writes continue loses no document."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from stores.search.catalog import static_specs
from stores.search.indexes import IndexManager, IndexSpec


async def test_rebuild_via_alias_swap_loses_no_documents(search_store):
    base = static_specs()["disputes"]
    spec = IndexSpec(name="reindex-probe", body=base.body)
    manager = IndexManager(search_store)
    first = await manager.ensure(spec)
    alias = manager.alias(spec)

    async def put(i: int) -> None:
        await search_store.os.index(index=alias, id=f"c{i}", body={
            "case_id": f"c{i}", "status": "opened", "text": f"case {i}", "indexed_at": datetime.now(UTC).isoformat()})

    for i in range(300):
        await put(i)
    await search_store.os.indices.refresh(index=alias)
    stop = asyncio.Event()
    written: list[int] = []

    async def writer() -> None:
        i = 300
        while not stop.is_set():
            await put(i)
            written.append(i)
            i += 1
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
    await search_store.os.indices.refresh(index=alias)

    assert report.old_index == first and report.new_index.endswith("-000002")
    assert list(await search_store.os.indices.get_alias(name=alias)) == [report.new_index]
    assert not await search_store.os.indices.exists(index=first)
    expected = {f"c{i}" for i in [*range(300), *written]}
    res = await search_store.os.search(index=alias, body={"size": 10_000, "_source": False})
    assert {h["_id"] for h in res["hits"]["hits"]} == expected
    assert len(written) > 0 and min(reads) >= 300  # readers never saw an empty or missing index

    again = await manager.rebuild(spec)  # a second rebuild keeps counting generations
    assert again.new_index.endswith("-000003") and again.new_count == len(expected)


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
