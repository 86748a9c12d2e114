"""The kNN graph and search settings reach the index body, its `_meta`, the query and the rebuild spec."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings, reset_settings


@pytest.fixture
def knn_env(monkeypatch):
    monkeypatch.setenv("KREDETE_KNN_M", "24")
    monkeypatch.setenv("KREDETE_KNN_EF_CONSTRUCTION", "200")
    monkeypatch.setenv("KREDETE_KNN_EF_SEARCH", "400")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_defaults():
    s = Settings()
    assert (s.knn_m, s.knn_ef_construction, s.knn_ef_search) == (48, 512, 800)


def test_a_new_index_and_the_queries_take_the_configured_values(knn_env):
    from retrieval.service import RetrieverConfig
    from stores.search.catalog import chunks_spec
    from stores.search.knn import knn_query
    from stores.search.mappings import KnnMethod

    body = chunks_spec(384).body
    method = body["mappings"]["properties"]["embedding"]["method"]
    assert method["parameters"] == {"m": 24, "ef_construction": 200}
    assert body["mappings"]["_meta"]["knn_method"] == method  # recorded, so a rebuild keeps it
    assert KnnMethod(m=8).body()["parameters"] == {"m": 8, "ef_construction": 200}
    ef = RetrieverConfig().ef_search
    assert ef == 400
    assert knn_query("embedding", [0.1, 0.2], 10, ef_search=ef)["knn"]["embedding"]["method_parameters"] == \
        {"ef_search": 400}


def test_an_existing_index_keeps_the_graph_its_meta_records(knn_env):
    from stores.search.catalog import chunks_spec_from_meta
    from stores.search.mappings import KnnMethod

    recorded = {"name": "hnsw", "engine": "lucene", "space_type": "l2", "parameters": {"m": 16, "ef_construction": 128}}
    assert KnnMethod.from_body(recorded).body() == recorded
    meta = {"embedding_model": "m", "dim": 8, "knn_method": recorded}
    kept = chunks_spec_from_meta(meta).body["mappings"]["properties"]["embedding"]["method"]
    assert kept == recorded
    # `kredete search reindex chunks --knn-graph`: today's graph, the recorded engine and space
    regraphed = chunks_spec_from_meta(meta, graph={"m": 32, "ef_construction": 256}).body
    assert regraphed["mappings"]["_meta"]["knn_method"] == {**recorded, "parameters": {"m": 32, "ef_construction": 256}}
    assert regraphed["mappings"]["properties"]["embedding"]["dimension"] == 8


@pytest.mark.parametrize(("var", "value"), [("KREDETE_KNN_M", "1"), ("KREDETE_KNN_EF_CONSTRUCTION", "4"),
                                            ("KREDETE_KNN_EF_SEARCH", "0"), ("KREDETE_KNN_M", "many")])
def test_bad_values_are_refused(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()
