"""`kredete stack up` starts independent servers side by side (which servers share a lane), and `stack down` stops
the lanes side by side, each in reverse, the Patroni leader last and the object store after the rest: pure logic."""

from __future__ import annotations

from dataclasses import dataclass

from kredete.stack import DEPENDS, HA_DEPENDS, _lanes, _stop_phases


@dataclass
class Named:
    name: str


def names(lanes) -> list[list[str]]:
    return [[s.name for s in lane] for lane in lanes]


def test_default_profile_lanes_keep_dependencies_in_order():
    order = ["postgres", "postgres-replica", "postgres-replica2", "redis", "mongo", "opensearch", "s3-audit",
             "s3-cold", "s3", "s3-dr"]
    assert names(_lanes([Named(n) for n in order], DEPENDS)) == [
        ["postgres", "postgres-replica", "postgres-replica2", "mongo"],
        ["redis"],
        ["opensearch"],
        ["s3-audit", "s3-cold", "s3", "s3-dr"],
    ]


def test_a_server_linking_two_lanes_merges_them_in_start_order():
    # s3-cold and s3-audit start in lanes of their own until s3, which needs both, joins them
    order = ["s3-cold", "redis", "s3-audit", "s3"]
    assert names(_lanes([Named(n) for n in order], DEPENDS)) == [["s3-cold", "s3-audit", "s3"], ["redis"]]


def test_ha_profile_puts_etcd_patroni_and_ferretdb_in_one_lane():
    order = ["etcd1", "etcd2", "etcd3", "ha-pg1", "ha-pg2", "ha-pg3", "redis", "mongo"]
    assert names(_lanes([Named(n) for n in order], HA_DEPENDS)) == [
        ["etcd1", "etcd2", "etcd3", "ha-pg1", "ha-pg2", "ha-pg3", "mongo"], ["redis"]]


def test_only_some_servers_still_follow_their_dependencies():
    assert names(_lanes([Named("postgres"), Named("opensearch")], DEPENDS)) == [["postgres"], ["opensearch"]]
    assert names(_lanes([], DEPENDS)) == []


def test_stack_down_stops_the_patroni_leader_after_the_other_members(monkeypatch):
    from kredete.stack import _leader_last, patroni

    order = [Named(n) for n in ("mongo", "ha-pg3", "ha-pg2", "ha-pg1", "etcd3", "etcd2", "etcd1")]
    monkeypatch.setattr(patroni, "leader", lambda timeout=2.0: {"name": "ha-pg2", "role": "leader"})
    assert [s.name for s in _leader_last(order)] == ["mongo", "ha-pg3", "ha-pg1", "ha-pg2", "etcd3", "etcd2", "etcd1"]
    monkeypatch.setattr(patroni, "leader", lambda timeout=2.0: None)  # no leader (cluster down): order kept
    assert [s.name for s in _leader_last(order)] == [s.name for s in order]


def test_stack_down_stops_lanes_in_reverse_and_the_object_store_last(monkeypatch):
    from kredete.stack import patroni

    order = ["postgres", "postgres-replica", "mongo", "redis", "s3-audit", "s3-cold", "s3", "s3-dr", "alertmanager",
             "prometheus"]
    assert [names(phase) for phase in _stop_phases([Named(n) for n in order], DEPENDS)] == [
        [["mongo", "postgres-replica", "postgres"], ["redis"], ["prometheus", "alertmanager"]],
        [["s3-dr", "s3", "s3-cold", "s3-audit"]],
    ]
    monkeypatch.setattr(patroni, "leader", lambda timeout=2.0: {"name": "ha-pg1", "role": "leader"})
    ha = ["etcd1", "etcd2", "etcd3", "ha-pg1", "ha-pg2", "ha-pg3", "redis", "mongo", "s3"]
    assert [names(phase) for phase in _stop_phases([Named(n) for n in ha], HA_DEPENDS)] == [
        [["mongo", "ha-pg3", "ha-pg2", "ha-pg1", "etcd3", "etcd2", "etcd1"], ["redis"]], [["s3"]]]
    assert _stop_phases([], DEPENDS) == []
