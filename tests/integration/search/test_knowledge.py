"""Knowledge index against the real OpenSearch: mapping, exact-kNN agreement, hybrid quality, scope."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from guards.redaction import redact
from retrieval.documents import SourceDoc
from retrieval.ingest import Ingestor
from retrieval.search import IndexProfile, Searcher
from stores.scope import RowScope
from stores.search.catalog import CHUNKS, chunks_spec
from stores.search.indexes import IndexManager
from stores.search.knn import scope_filter
from stores.search.mappings import filterable_fields

from .labelled import LABELLED, reciprocal_rank


async def test_mapping_created_idempotently(search_store, kb_index, encoder):
    manager = IndexManager(search_store)
    spec = chunks_spec(encoder.dim, model=encoder.name)
    first = await manager.ensure(spec)
    assert await manager.ensure(spec) == first  # idempotent
    alias = search_store.index_name(CHUNKS)
    mapping = (await search_store.os.indices.get_mapping(index=alias))[first]["mappings"]
    emb = mapping["properties"]["embedding"]
    assert emb["type"] == "knn_vector" and emb["dimension"] == 384
    assert emb["method"]["engine"] == "lucene" and emb["method"]["space_type"] == "cosinesimil"
    assert emb["method"]["parameters"] == {"m": 48, "ef_construction": 512}  # KREDETE_KNN_M/_EF_CONSTRUCTION
    assert mapping["properties"]["user_id"]["type"] == "keyword"
    assert mapping["properties"]["text"]["analyzer"] == "kredete_text"
    assert mapping["dynamic"] == "strict"
    settings = (await search_store.os.indices.get_settings(index=first))[first]["settings"]["index"]
    assert settings["knn"] == "true"
    aliases = await search_store.os.indices.get_alias(name=alias)
    assert list(aliases) == [first]
    tpl = await search_store.os.indices.get_index_template(name=alias)
    assert tpl["index_templates"][0]["index_template"]["index_patterns"] == [f"{alias}-*"]


async def test_knn_equals_exact_cosine_top_k(search_store, encoder, kb_index, retriever):
    """On the small KB, approximate kNN top-k == exact cosine top-k (numpy and the server's script)."""
    alias = search_store.index_name(CHUNKS)
    res = await search_store.os.search(index=alias, body={"size": 1000, "query": {"match_all": {}},
                                                          "_source": ["embedding"]})
    ids = [h["_id"] for h in res["hits"]["hits"]]
    matrix = np.array([h["_source"]["embedding"] for h in res["hits"]["hits"]], dtype=np.float32)
    searcher = retriever.searcher
    for query, _ in LABELLED[:12]:
        q = await encoder.embed_query(query)
        cos = matrix @ q
        want = [ids[i] for i in np.argsort(-cos, kind="stable")[:5]]
        got = await searcher.knn(q.tolist(), 5, None)
        assert [h.id for h in got] == want
        assert [h.score for h in got] == pytest.approx(sorted(cos, reverse=True)[:5], abs=1e-4)
        exact = await searcher.exact(q.tolist(), 5, None)
        assert [h.id for h in exact] == want


async def test_hybrid_beats_or_equals_each_alone(retriever):
    mrr: dict[str, float] = {}
    for mode, fusion in (("knn", "minmax"), ("bm25", "minmax"), ("hybrid", "minmax"), ("hybrid", "rrf")):
        rr = []
        for query, relevant in LABELLED:
            passages = await retriever.search(query, RowScope.none(), k=10, mode=mode, fusion=fusion)
            rr.append(reciprocal_rank([p.source_id for p in passages], relevant))
        mrr[f"{mode}/{fusion}"] = sum(rr) / len(rr)
    best_single = max(mrr["knn/minmax"], mrr["bm25/minmax"])
    assert mrr["hybrid/minmax"] >= best_single, mrr
    assert mrr["hybrid/rrf"] >= best_single, mrr


async def test_passages_carry_citation_score_and_highlights(retriever):
    passages = await retriever.search("what margin do you add to the exchange rate", RowScope.none(), k=3)
    top = passages[0]
    assert top.citation.startswith("kb:fx-fees#") and top.chunk_id == top.citation
    assert top.doc_type == "kb" and top.user_id is None and top.version == "2"
    assert 0 < top.score <= 1 and passages == sorted(passages, key=lambda p: -p.score)
    assert any("**" in h for h in top.highlights)
    assert set(top.scores) == {"knn", "bm25"}


async def test_min_score_and_doc_types(retriever):
    all_p = await retriever.search("exchange rate margin", RowScope.none(), k=10, mode="knn")
    cut = all_p[2].score
    kept = await retriever.search("exchange rate margin", RowScope.none(), k=10, mode="knn", min_score=cut)
    assert kept and all(p.score >= cut for p in kept) and len(kept) <= 3
    none = await retriever.search("exchange rate margin", RowScope.none(), k=5, doc_types=["dispute"])
    assert none == []


@pytest.fixture(scope="module")
async def private_docs(search_store, encoder):
    """Two users' private notes; user A's note is the exact text of the probe query."""
    ingestor = Ingestor(search_store, encoder, redact=redact)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    probe = "Remittance to grandmother in Kisumu was delayed by the M-Pesa wallet limit"
    docs = [SourceDoc(source_id="note-a", doc_type="dispute", user_id=a, title="Case note", text=probe)]
    docs += [SourceDoc(source_id=f"note-b{i}", doc_type="dispute", user_id=b, title="Case note",
                       text=f"Customer B question {i} about card statements and cedi payouts") for i in range(3)]
    report = await ingestor.index_docs(docs)
    assert report.docs_indexed == 4, report.skipped
    await search_store.os.indices.refresh(index=search_store.index_name(CHUNKS))
    return a, b, probe


@pytest.mark.parametrize("mode", ["knn", "bm25", "hybrid"])
async def test_scope_never_returns_another_users_chunk(retriever, private_docs, mode):
    a, b, probe = private_docs
    for k in (1, 5, 20):
        as_b = await retriever.search(probe, RowScope.users(b), k=k, mode=mode)
        assert all(p.user_id in (None, b) for p in as_b)
        assert "note-a" not in {p.source_id for p in as_b}
        if mode == "knn":
            assert len(as_b) == k  # filter inside the knn clause: still k hits
    as_a = await retriever.search(probe, RowScope.users(a), k=1, mode=mode)
    assert as_a[0].source_id == "note-a"
    staff = await retriever.search(probe, RowScope.everyone(), k=3, mode=mode)
    assert staff[0].source_id == "note-a"
    nobody = await retriever.search(probe, RowScope.none(), k=20, mode=mode)
    assert all(p.doc_type == "kb" and p.user_id is None for p in nobody)


async def test_scope_filter_is_inside_the_knn_clause():
    flt = scope_filter(RowScope.users("7b0e6b2e-52a6-4c0e-9d5e-0a6c7a3f2b11"))
    assert flt == {"bool": {"should": [{"terms": {"user_id": ["7b0e6b2e-52a6-4c0e-9d5e-0a6c7a3f2b11"]}},
                                       {"term": {"visibility": "public"}}], "minimum_should_match": 1}}
    from stores.search.knn import knn_query

    q = knn_query("embedding", [0.0] * 3, 5, filter=flt)
    assert q["knn"]["embedding"]["filter"] == flt
    assert scope_filter(RowScope.none(), public_field=None) == {"bool": {"must_not": [{"match_all": {}}]}}
    assert scope_filter(RowScope.everyone()) is None


async def test_unknown_filter_field_is_refused(search_store):
    from retrieval.errors import InvalidQuery

    searcher = Searcher(search_store, IndexProfile(name=CHUNKS, filterable=filterable_fields(chunks_spec().body)))
    with pytest.raises(InvalidQuery, match="unknown field"):
        searcher.build_filter(None, {"no_such_field": "x"})
    assert searcher.build_filter(None, {"doc_type": ["kb"]}) == {"terms": {"doc_type": ["kb"]}}


async def test_query_embeddings_are_cached_in_redis(retriever, cache_store):
    q = f"cache probe {uuid.uuid4().hex}"
    await retriever.search(q, RowScope.none(), k=1, mode="knn")
    key = retriever.encoder.cache_key(q)
    assert key.startswith("qemb:")
    assert 0 < await cache_store.redis.ttl(key) <= 86_400
    hits = retriever.encoder.hits
    await retriever.search(q, RowScope.none(), k=1, mode="knn")
    assert retriever.encoder.hits == hits + 1


@pytest.mark.parametrize("space", ["l2", "innerproduct"])
async def test_a_non_default_space_end_to_end(own_search, encoder, space):
    """Index with another space: the mapping pins it, the retriever reads it from the index _meta, and
    kNN ranks and scores as exact search under that space does (numpy and the server's script)."""
    from retrieval.service import KnowledgeRetriever
    from retrieval.sources import KbSource
    from stores.errors import InvalidData
    from stores.search.mappings import KnnMethod

    method = KnnMethod(space_type=space)
    report = await Ingestor(own_search, encoder, redact=redact, method=method).run(KbSource(), resume=False)
    assert report.chunks_indexed > 20
    alias = own_search.index_name(CHUNKS)
    mapping = next(iter((await own_search.os.indices.get_mapping(index=alias)).values()))["mappings"]
    assert mapping["properties"]["embedding"]["method"]["space_type"] == space
    assert mapping["_meta"]["knn_method"]["space_type"] == space
    with pytest.raises(InvalidData, match="kredete ingest --reset"):  # a default-space ingest is refused
        await Ingestor(own_search, encoder, redact=redact).ensure_indexes()

    res = await own_search.os.search(index=alias, body={"size": 1000, "_source": ["embedding"]})
    ids = [h["_id"] for h in res["hits"]["hits"]]
    matrix = np.array([h["_source"]["embedding"] for h in res["hits"]["hits"]], dtype=np.float64)
    retriever = KnowledgeRetriever(own_search, encoder)
    for query, _ in LABELLED[:10]:
        q = (await encoder.embed_query(query)).astype(np.float64)
        sim = 1.0 / (1.0 + ((matrix - q) ** 2).sum(axis=1)) if space == "l2" else matrix @ q
        order = np.argsort(-sim, kind="stable")[:5]
        got = await retriever.search(query, RowScope.none(), k=5, mode="knn")
        assert [p.chunk_id for p in got] == [ids[i] for i in order]
        assert [p.score for p in got] == pytest.approx(list(sim[order]), abs=1e-4)
        exact = await retriever.searcher.exact(q.tolist(), 5, None)
        assert [h.id for h in exact] == [ids[i] for i in order]
        assert [h.score for h in exact] == pytest.approx(list(sim[order]), abs=1e-4)
    assert (await retriever.index_method()).space_type == space
    # `kredete search reindex chunks` rebuilds from the index's own _meta: the space survives the swap
    from stores.search.catalog import chunks_spec_from_meta

    manager = IndexManager(own_search)
    rebuilt = await manager.rebuild(chunks_spec_from_meta(await manager.meta(chunks_spec())))
    assert rebuilt.new_count == len(ids) and rebuilt.new_index.endswith("-000002")
    mapping = (await own_search.os.indices.get_mapping(index=rebuilt.new_index))[rebuilt.new_index]["mappings"]
    assert mapping["properties"]["embedding"]["method"]["space_type"] == space
    fresh = KnowledgeRetriever(own_search, encoder)
    q = (await encoder.embed_query(LABELLED[0][0])).astype(np.float64)
    sim = 1.0 / (1.0 + ((matrix - q) ** 2).sum(axis=1)) if space == "l2" else matrix @ q
    order = np.argsort(-sim, kind="stable")[:5]
    again = await fresh.search(LABELLED[0][0], RowScope.none(), k=5, mode="knn")
    assert [p.chunk_id for p in again] == [ids[i] for i in order]
    assert [p.score for p in again] == pytest.approx(list(sim[order]), abs=1e-4)
