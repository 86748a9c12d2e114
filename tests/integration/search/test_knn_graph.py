"""`kredete search reindex chunks --knn-graph`: a new generation with today's HNSW graph, the same vectors."""

from __future__ import annotations

import random

import pytest

from stores.search.catalog import CHUNKS, chunks_spec, chunks_spec_from_meta
from stores.search.indexes import IndexManager
from stores.search.knn import exact_knn_query, knn_query
from stores.search.mappings import KnnMethod


async def test_rebuild_with_another_graph_keeps_vectors_engine_and_space(own_search):
    rng = random.Random(5)
    manager = IndexManager(own_search)
    old = KnnMethod(space_type="l2", m=8, ef_construction=32)
    first = await manager.ensure(chunks_spec(8, old, model="probe"))
    alias = own_search.index_name(CHUNKS)
    vectors = {f"c{i}": [rng.uniform(-1, 1) for _ in range(8)] for i in range(200)}
    for cid, v in vectors.items():
        await own_search.os.index(index=alias, id=cid, body={"chunk_id": cid, "text": cid, "embedding": v})
    await own_search.os.indices.refresh(index=alias)

    meta = await manager.meta(chunks_spec())
    rebuilt = await manager.rebuild(chunks_spec_from_meta(meta, graph={"m": 24, "ef_construction": 200}))
    assert rebuilt.old_index == first and rebuilt.new_count == len(vectors)
    mapping = (await own_search.os.indices.get_mapping(index=rebuilt.new_index))[rebuilt.new_index]["mappings"]
    want = {"name": "hnsw", "engine": "lucene", "space_type": "l2", "parameters": {"m": 24, "ef_construction": 200}}
    assert mapping["properties"]["embedding"]["method"] == want
    assert mapping["_meta"]["knn_method"] == want and mapping["_meta"]["embedding_model"] == "probe"
    assert KnnMethod.from_body((await manager.meta(chunks_spec()))["knn_method"]) == KnnMethod(**{
        "space_type": "l2", "m": 24, "ef_construction": 200})
    # The copied vectors answer as before: kNN over the new graph agrees with exact search.
    q = [rng.uniform(-1, 1) for _ in range(8)]
    approx = await own_search.os.search(index=alias, body={"size": 5, "query": knn_query("embedding", q, 5,
                                                                                           ef_search=100)})
    exact = await own_search.os.search(index=alias, body={"size": 5, "query": exact_knn_query(
        "embedding", q, space_type="l2")})
    assert [h["_id"] for h in approx["hits"]["hits"]] == [h["_id"] for h in exact["hits"]["hits"]]


async def test_an_ingestor_keeps_an_existing_index_graph_unless_given_one(own_search):
    """After KREDETE_KNN_M / _EF_CONSTRUCTION change, ingestion into an older index keeps that index's graph;
    an explicit other graph (or another space) is still refused."""
    from types import SimpleNamespace

    from guards.redaction import redact
    from retrieval.ingest import Ingestor
    from stores.errors import InvalidData

    encoder = SimpleNamespace(name="probe", dim=8)  # ensure_indexes reads only the model's name and size
    built = KnnMethod(m=8, ef_construction=32)
    await Ingestor(own_search, encoder, redact=redact, method=built).ensure_indexes()
    default = Ingestor(own_search, encoder, redact=redact)
    assert default.method != built
    await default.ensure_indexes()
    assert default.method == built
    for other in (KnnMethod(m=12, ef_construction=32), KnnMethod(space_type="l2", m=8, ef_construction=32)):
        with pytest.raises(InvalidData, match="kredete ingest --reset"):
            await Ingestor(own_search, encoder, redact=redact, method=other).ensure_indexes()
