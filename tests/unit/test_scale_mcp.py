"""bench/scale_mcp.py's pure parts: the disk refusal, what to do with a dataset, results merged per size, goals."""

from __future__ import annotations

import pytest

from bench.scale import BYTES_PER_USER
from bench.scale_mcp import (
    P99_GOAL_MS,
    carried,
    dataset_step,
    disk_needed,
    disk_refusal,
    evaluate,
    merge,
    missing_sizes,
)

GB = 2**30


def test_the_disk_estimate_grows_with_users_and_includes_the_credit_store():
    assert disk_needed(100_000) == 100 * disk_needed(1_000)
    assert disk_needed(1_000) > 1_000 * BYTES_PER_USER


def test_the_estimate_counts_the_postgres_copies_of_the_stack_profile():
    # lean: the primary alone; default: + two streaming replicas and the pgBackRest WAL archive (ha: 3 members + it)
    lean, default = disk_needed(100_000, "lean"), disk_needed(100_000, "default")
    assert lean < default and disk_needed(100_000, "ha") == default
    assert 9 * GB < lean < 15 * GB and 35 * GB < default < 45 * GB  # ~11 vs ~40 GB at 100k users
    # 100k users fit the lean stack on a disk with 58 GB free keeping 25 free; on the default stack they are refused
    assert disk_refusal(100_000, free=58 * GB, keep_free=25 * GB, profile="lean") is None
    why = disk_refusal(100_000, free=58 * GB, keep_free=25 * GB, profile="default")
    assert why is not None and "default stack profile" in why


def test_a_size_that_does_not_fit_is_refused_with_the_estimate():
    need = disk_needed(100_000)
    assert disk_refusal(100_000, free=need + 26 * GB, keep_free=25 * GB) is None
    why = disk_refusal(100_000, free=need + 24 * GB, keep_free=25 * GB)
    assert why is not None and "100,000 users" in why and f"{need / GB:.1f} GiB" in why
    # a resumed seed needs only the rest
    assert disk_refusal(100_000, free=need // 2 + 26 * GB, keep_free=25 * GB, done=0.6) is None
    assert "40% seeded already" in disk_refusal(100_000, free=need // 2 + 26 * GB, keep_free=25 * GB, done=0.4)


def test_a_dataset_is_reused_when_complete_resumed_when_partial_refused_only_when_it_must_grow():
    assert dataset_step(ready=True, exists=True, refusal=None) == "reuse"
    assert dataset_step(ready=False, exists=True, refusal=None) == "resume"
    assert dataset_step(ready=False, exists=False, refusal=None) == "build"
    assert dataset_step(ready=False, exists=True, refusal="refused: ...") == "refuse"


def _entry(p50: float, p99: float, complete: bool = True) -> dict:
    return {"complete": complete, "tools": {"customer/get_credit_report": {"p50_ms": p50, "p99_ms": p99}}}


def test_results_merge_per_size_and_an_interrupted_run_measures_only_what_is_missing():
    res = merge({}, 10_000, _entry(12, 30))
    res = merge(res, 1_000, _entry(10, 20))
    assert list(res["sizes"]) == ["1000", "10000"]  # sorted by size, both kept
    res = merge(res, 10_000, _entry(11, 25))  # a size measured again replaces only itself
    assert res["sizes"]["10000"]["tools"]["customer/get_credit_report"]["p50_ms"] == 11
    assert res["sizes"]["1000"]["tools"]["customer/get_credit_report"]["p50_ms"] == 10
    res = merge(res, 100_000, _entry(1, 1, complete=False))
    assert missing_sizes(res, [1_000, 10_000, 100_000], remeasure=False) == [100_000]
    assert missing_sizes(res, [1_000, 10_000], remeasure=True) == [1_000, 10_000]


def test_goals_compare_the_largest_size_with_the_smallest():
    res = merge(merge(merge({}, 1_000, _entry(10, 40)), 10_000, _entry(100, 400)), 100_000, _entry(14, 150))
    [row] = evaluate(res)
    assert (row["small"], row["large"], row["p50_ratio"]) == (1_000, 100_000, 1.4)
    assert row["p50_ok"] and row["p99_ok"]
    res = merge(res, 100_000, _entry(16, P99_GOAL_MS + 1))
    [row] = evaluate(res)
    assert not row["p50_ok"] and not row["p99_ok"]
    [alone] = evaluate(merge({}, 1_000, _entry(10, 40)))  # one size: no ratio to judge
    assert "p50_ratio" not in alone and alone["p99_ok"]


def test_an_interrupted_measurement_keeps_the_tools_it_finished_for_the_same_sizes_and_calls():
    partial = {"complete": False, "measured_with": [1_000, 10_000], "calls_per_tool": 50,
               "tools": {"customer/get_credit_report": {"p50_ms": 10, "p99_ms": 20}}}
    res = merge(merge({}, 1_000, partial), 10_000, partial)
    assert carried(res, [1_000, 10_000], 50) == {n: partial["tools"] for n in (1_000, 10_000)}
    assert carried(res, [1_000, 10_000], 60) == {1_000: {}, 10_000: {}}  # another call count: measured again
    assert carried(res, [1_000], 50) == {1_000: {}}  # other sizes: not interleaved with the same ones
    assert carried(merge(res, 1_000, {**partial, "complete": True}), [1_000, 10_000], 50)[1_000] == {}
    assert evaluate(res) == []  # goals are judged on complete sizes only


def test_tools_can_be_selected_and_an_unknown_one_is_refused_before_anything_runs():
    from bench.scale_mcp import parser, run

    assert parser().parse_args(["--tools", "corridor_volume"]).tools == ["corridor_volume"]
    assert parser().parse_args([]).tools is None
    with pytest.raises(SystemExit, match=r"unknown tool\(s\): no_such_tool"):
        run(parser().parse_args(["--tools", "corridor_volume", "no_such_tool", "--sizes", "1000"]))
