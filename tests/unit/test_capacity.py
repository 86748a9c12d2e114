"""Capacity projection, limit crossing and cost (pure logic over measured sizes)."""

from __future__ import annotations

import math

import pytest

from config.monitoring import MonitoringSettings
from kredete.ops.capacity import GB, Item, PriceTable, StoreUsage, build_report, crossing_month


def test_crossing_month_is_the_first_month_above_the_limit():
    # 100 GB at 15 %: month m holds 100 * 1.15^m; 500 GB is passed in month 12 (1.15^11 = 4.65, 1.15^12 = 5.35).
    assert crossing_month(100 * GB, 500 * GB, 0.15) == 12
    assert 100 * 1.15 ** 11 < 500 < 100 * 1.15 ** 12
    assert crossing_month(600 * GB, 500 * GB, 0.15) == 0
    assert crossing_month(0, 500 * GB, 0.15) is None
    assert crossing_month(100 * GB, 500 * GB, 0.0) is None


def test_every_price_has_a_source_and_a_date():
    table = PriceTable.load()
    for store, prices in table.stores.items():
        for p in [*prices.instances, *prices.storage]:
            assert p.source.startswith("http"), (store, p.item)
            assert len(p.date) >= 7 and p.checked in ("source", "recalled"), (store, p.item)
            assert (p.per_hour or 0) > 0 or (p.per_gb_month or 0) > 0, (store, p.item)


def _usage(pg_bytes: float, os_bytes: float, rows: int = 10) -> list[StoreUsage]:
    return [StoreUsage(store="postgres", kind="rows", bytes=int(pg_bytes), rows=rows,
                       items=[Item(name="transactions", bytes=int(pg_bytes), rows=rows)]),
            StoreUsage(store="opensearch", kind="documents", bytes=int(os_bytes), rows=rows),
            StoreUsage(store="redis", kind="keys", bytes=0, rows=0, error="unreachable: refused")]


def test_report_projects_per_store_and_names_the_first_limit():
    report = build_report(_usage(10 * GB, 100 * GB), users=1000, monitor=MonitoringSettings(),
                          prices=PriceTable.load())
    stores = {s["store"]: s for s in report["stores"]}
    assert stores["opensearch"]["crosses_limit_month"] == 12
    assert stores["postgres"]["per_user_bytes"] == pytest.approx(10 * GB / 1000)
    assert stores["postgres"]["projection_bytes"][24] == pytest.approx(10 * GB * 1.15 ** 24)
    assert stores["redis"]["error"] and stores["redis"]["cost_now"] is None  # unknown, not zero
    assert "opensearch in month 12" in report["headline"]
    # Storage cost grows with the data; instance cost does not.
    pg = stores["postgres"]
    assert pg["cost_at_horizon"]["instances"] == pg["cost_now"]["instances"]
    assert pg["cost_at_horizon"]["storage"] == pytest.approx(pg["cost_now"]["storage"] * 1.15 ** 24, rel=0.01)


def test_growth_and_months_are_configurable():
    report = build_report(_usage(10 * GB, 100 * GB), users=10, monitor=MonitoringSettings(),
                          prices=PriceTable.load(), growth=0.5, months=6)
    os_store = next(s for s in report["stores"] if s["store"] == "opensearch")
    assert len(os_store["projection_bytes"]) == 7
    assert os_store["crosses_limit_month"] == math.floor(math.log(5) / math.log(1.5)) + 1 == 4


def test_an_empty_database_says_so_instead_of_dividing_by_zero():
    report = build_report(_usage(8e6, 0, rows=0), users=0, monitor=MonitoringSettings(), prices=PriceTable.load())
    assert report["empty"] is True
    assert "empty" in report["headline"]
    assert all(s["per_user_bytes"] is None for s in report["stores"])
