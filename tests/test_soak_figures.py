"""The soak's arithmetic (bench/soak.py): samples a minute apart, missing ones, and slopes per hour."""

import pytest

from bench.soak import Soak, samples, slope_per_hour, slopes


def test_a_slope_is_per_hour_and_ignores_samples_that_could_not_be_read():
    minutes = [0.0, 1.0, 2.0, 3.0]
    assert slope_per_hour(minutes, [100.0, 101.0, None, 103.0]) == pytest.approx(60.0)
    assert slope_per_hour(minutes, [5.0, 5.0, 5.0, 5.0]) == 0
    assert slope_per_hour(minutes, [None, None, 7.0, None]) is None


def test_a_series_first_seen_late_lines_up_with_the_minutes():
    soak = Soak()
    soak.add(0, {"worker_rss_mib": 100.0})
    soak.add(1, {"worker_rss_mib": None, "consumer_lag_messages": 3.0})
    soak.add(2, {"worker_rss_mib": 102.0, "consumer_lag_messages": 1.0})
    assert soak.series == {"worker_rss_mib": [100.0, None, 102.0], "consumer_lag_messages": [None, 3.0, 1.0]}
    # the second half (minutes 1 and 2) has one reading: no slope
    assert slopes(soak)[0] == ["`worker_rss_mib`", "100.0", "102.0", "60.0", "n/a"]
    header, rows = samples(soak)
    assert header == ["minute", "worker_rss_mib", "consumer_lag_messages"]
    assert rows[1] == ["1", "", "3.0"]
