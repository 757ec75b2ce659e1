"""The report timer's schedule: once per interval, a grace period after each boundary of the clock."""

from agents.report_timer import AlignedSchedule

MINUTE = 1_764_410_400.0  # a minute boundary (2025-11-29 10:00:00 UTC)


def test_a_run_is_due_once_just_after_each_minute_plus_the_grace():
    schedule = AlignedSchedule(interval=60, grace=5)
    assert not schedule.due(MINUTE + 30)  # at start-up: the first run is at the next boundary
    assert not schedule.due(MINUTE + 59)
    assert not schedule.due(MINUTE + 64.9)  # the next minute has closed, but its grace has not passed
    assert schedule.due(MINUTE + 65)
    assert not schedule.due(MINUTE + 66)


def test_a_late_tick_gives_one_run_not_one_per_missed_minute():
    schedule = AlignedSchedule(interval=60, grace=5)
    assert not schedule.due(MINUTE + 4)
    assert schedule.due(MINUTE + 5)
    assert schedule.due(MINUTE + 5 + 600)  # ten minutes later (the worker was busy): one run
    assert not schedule.due(MINUTE + 5 + 601)


def test_with_a_lead_a_run_is_due_that_much_before_its_moment_and_keeps_the_moment():
    schedule = AlignedSchedule(interval=60, grace=5, lead=2)
    assert not schedule.due(MINUTE + 30)
    assert not schedule.due(MINUTE + 62.9)
    assert schedule.due(MINUTE + 63)
    assert schedule.last_due == MINUTE + 65
    assert not schedule.due(MINUTE + 65)  # its moment has come, but it was launched already
