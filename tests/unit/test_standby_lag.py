"""bench/restore.py's replay lag read at the standby: how long ago the primary's WAL was where the standby has
replayed to, from the primary's sampled positions (an upper bound at the sampling resolution)."""

from bench.restore import standby_lag

HISTORY = [(0.0, 100), (0.25, 200), (0.5, 300)]


def test_caught_up_is_zero():
    assert standby_lag(HISTORY, 300, 0.6) == 0.0
    assert standby_lag([], 5, 1.0) == 0.0


def test_lag_runs_from_the_last_sample_before_the_primary_passed_the_position():
    assert standby_lag(HISTORY, 150, 0.6) == 0.6  # passed 150 between 0 and 0.25 s: counted from 0
    assert abs(standby_lag(HISTORY, 200, 0.6) - 0.35) < 1e-9  # at 200 at 0.25 s, past it only after
    assert standby_lag(HISTORY, 99, 0.6) == 0.6  # behind the first sample: counted from it
