"""The search cluster's configuration: profiles, node URLs, replica counts, mappings without replicas.

Pure functions of the environment and a scratch `.local/` (no server is started).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import reset_settings, resolve, search_replicas


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(tmp_path / "local"))
    for var in ("OPENSEARCH_URL", "SEARCH_REPLICAS", "STACK_PROFILE"):
        monkeypatch.delenv(f"KREDETE_{var}", raising=False)
    reset_settings()

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"KREDETE_{key.upper()}", value)
        reset_settings()

    yield set_env
    reset_settings()


def _planned(profile=None, only=None):
    from kredete import stack

    return [s.name for s in stack.plan(only, profile_name=profile)[0]]


def test_default_profile_is_one_node_without_replicas(env):
    from config import ports

    assert resolve().opensearch_url.get_secret_value() == f"http://127.0.0.1:{ports.OPENSEARCH}"
    assert search_replicas() == 0
    assert "opensearch" in _planned() and not any(n.startswith("opensearch-") for n in _planned())


def test_ha_profile_runs_three_nodes_and_the_client_gets_all_of_them(env):
    from config import ports

    env(stack_profile="ha")  # what `stack up --profile ha` and the other commands run under
    urls = resolve().opensearch_url.get_secret_value().split(",")
    assert urls == [f"http://127.0.0.1:{http}" for http, _ in ports.OPENSEARCH_NODES]
    assert search_replicas() == 1
    planned = _planned()
    assert [n for n in planned if n.startswith("opensearch")] == ["opensearch-1", "opensearch-2", "opensearch-3"]
    # `--only opensearch` names the whole cluster in this profile
    assert _planned(only=["opensearch"]) == ["opensearch-1", "opensearch-2", "opensearch-3"]
    env(stack_profile="default")
    assert "opensearch" in _planned() and not any(n.startswith("opensearch-") for n in _planned())
    # another profile's servers can be planned without switching (the bench runs both side by side)
    assert [n for n in _planned("ha") if n.startswith("opensearch")] == ["opensearch-1", "opensearch-2",
                                                                         "opensearch-3"]


def test_settings_override_the_profile(env):
    env(stack_profile="ha", search_replicas="2")
    assert search_replicas() == 2
    env(stack_profile="default", search_replicas="1")
    assert search_replicas() == 1  # asking for more than one node holds: the index is created yellow
    env(stack_profile="cloud")
    with pytest.raises(ValidationError, match="stack_profile"):  # the settings name the variable
        _planned()


def test_an_external_cluster_is_not_run_locally(env):
    env(opensearch_url="https://a.example.com:9200,https://b.example.com:9200", stack_profile="ha")
    from kredete import stack

    run, not_run = stack.plan()
    assert not any(s.name.startswith("opensearch") for s in run)
    assert {s.name for s in not_run} >= {"opensearch-1", "opensearch-2", "opensearch-3"}
    assert search_replicas() == 0  # an external cluster's replicas are set explicitly


def test_node_urls_are_parsed_and_checked():
    from stores.search.client import parse_hosts

    assert parse_hosts("http://a:1, http://b:2,") == ["http://a:1", "http://b:2"]
    for bad in ("", " , ", "a:9200", "http://a:99999", "ftp://a:1"):
        with pytest.raises(ValueError):
            parse_hosts(bad)


def test_no_mapping_fixes_a_replica_count():
    from stores.search.catalog import all_specs
    from stores.search.indexes import IndexManager

    class Store:
        replicas = 2

        def replica_count(self) -> int:
            return self.replicas

        def index_name(self, name: str) -> str:
            return f"p-{name}"

    for spec in all_specs().values():
        assert "number_of_replicas" not in spec.body["settings"], spec.name
        assert IndexManager(Store()).body(spec)["settings"]["number_of_replicas"] == 2  # type: ignore[arg-type]


def test_the_cluster_nodes_differ_only_in_their_own_settings(env):
    from kredete.stack.opensearch_cluster import OpenSearchNode, ha_cluster

    spec = ha_cluster()
    configs = [OpenSearchNode(spec, i).discovery_config() for i in range(3)]
    for i, text in enumerate(configs):
        assert f"node.attr.zone: az-{i + 1}" in text
        assert "cluster.routing.allocation.awareness.attributes: zone" in text
        assert "discovery.seed_hosts: [" + ", ".join(spec.seeds) + "]" in text
        # nobody joined a cluster yet: a new one may be bootstrapped from these three
        assert "cluster.initial_cluster_manager_nodes: [opensearch-1, opensearch-2, opensearch-3]" in text
    node = OpenSearchNode(spec, 0)
    node.data_dir.mkdir(parents=True)
    (node.data_dir / "cluster-uuid").write_text("abc\n")
    # once one node has joined, no node bootstraps another cluster
    assert all("initial_cluster_manager_nodes" not in OpenSearchNode(spec, i).discovery_config() for i in range(3))


def test_request_bodies_are_gzipped_at_the_fast_level():
    import gzip

    from stores.search.client import FastGzipConnection, SearchStore

    client = SearchStore("http://a:1,http://b:2")._new_client()
    assert client.transport.connection_class is FastGzipConnection  # its connections are made on first use
    body = b'{"index":{}}\n{"embedding":[0.123456789,0.987654321]}\n' * 500
    packed = FastGzipConnection(host="a", port=1, http_compress=True)._gzip_compress(body)
    assert gzip.decompress(packed) == body
    assert packed == gzip.compress(body, compresslevel=1) != gzip.compress(body, compresslevel=9)
