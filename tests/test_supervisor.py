"""The supervisor's rules, with stand-in parts and a hand-moved clock (no process is started)."""

import logging

import pytest

from infra.process import describe_exit
from infra.supervisor import GaveUp, RestartPolicy, Supervisor

POLICY = RestartPolicy(first_delay=1.0, longest_delay=8.0, most_restarts=5, period=600.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakePart:
    """Stands in for a process: ``die`` ends it, ``restart`` brings it back (or fails, if told to)."""

    def __init__(self, name: str = "Kafka") -> None:
        self.name = name
        self.status: str | None = None
        self.restarts = 0
        self.failing_starts = 0

    def die(self, how: str = "was killed by SIGKILL") -> None:
        self.status = how

    def exited(self) -> str | None:
        return self.status

    def restart(self) -> None:
        self.restarts += 1
        if self.failing_starts:
            self.failing_starts -= 1
            raise RuntimeError("port taken")
        self.status = None


def supervised(*parts: FakePart) -> tuple[Supervisor, Clock]:
    clock = Clock()
    supervisor = Supervisor(POLICY, clock)
    for part in parts:
        supervisor.add(part)
    return supervisor, clock


def restart_after(supervisor: Supervisor, clock: Clock, part: FakePart) -> float:
    """Let ``part`` die and the supervisor bring it back; return how long it waited."""
    part.die()
    supervisor.check()
    noticed, before = clock.now, part.restarts
    while part.restarts == before:
        clock.now += 0.5
        supervisor.check()
    return clock.now - noticed


def test_a_part_that_runs_is_left_alone():
    part = FakePart()
    supervisor, clock = supervised(part)
    for _ in range(10):
        clock.now += 60
        supervisor.check()
    assert part.restarts == 0


def test_a_part_that_dies_is_restarted_after_the_first_delay_and_the_log_says_so(
    caplog: pytest.LogCaptureFixture,
):
    part, other = FakePart("The Spark Connect server"), FakePart("PostgreSQL")
    supervisor, clock = supervised(part, other)
    part.die()
    with caplog.at_level(logging.INFO, logger="infra"):
        supervisor.check()
        assert part.restarts == 0
        clock.now += 0.9
        supervisor.check()
        assert part.restarts == 0
        clock.now += 0.1
        supervisor.check()
    assert part.restarts == 1 and part.exited() is None and other.restarts == 0
    assert "The Spark Connect server was killed by SIGKILL; starting it again in 1 s" in caplog.text
    assert "The Spark Connect server is back, 1.0 s after it went down." in caplog.text


def test_the_delay_doubles_with_each_recent_restart_up_to_the_longest():
    part = FakePart()
    supervisor, clock = supervised(part)
    waits = []
    for _ in range(5):
        waits.append(restart_after(supervisor, clock, part))
        clock.now += 1
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_part_that_dies_too_often_in_the_period_is_given_up_on():
    part = FakePart("Worker 2")
    supervisor, clock = supervised(part)
    for _ in range(POLICY.most_restarts):
        restart_after(supervisor, clock, part)
    part.die("exited with code 1")
    with pytest.raises(GaveUp, match="Worker 2 exited with code 1, after 5 restarts in the last 10 minutes"):
        supervisor.check()


def test_restarts_older_than_the_period_no_longer_count():
    part = FakePart()
    supervisor, clock = supervised(part)
    for _ in range(POLICY.most_restarts):
        restart_after(supervisor, clock, part)
    clock.now += POLICY.period
    assert restart_after(supervisor, clock, part) == POLICY.first_delay
    assert part.restarts == POLICY.most_restarts + 1


def test_a_restart_that_fails_is_tried_again_and_counts_toward_the_bound(caplog: pytest.LogCaptureFixture):
    part = FakePart("PostgreSQL")
    part.failing_starts = 2
    supervisor, clock = supervised(part)
    with caplog.at_level(logging.INFO, logger="infra"):
        waits = [restart_after(supervisor, clock, part)]
        while part.exited() is not None:
            supervisor.check()
            clock.now += 0.5
    assert part.restarts == 3 and waits == [1.0]
    assert caplog.text.count("PostgreSQL did not start again: port taken") == 2
    assert "starting it again in 4 s (restart 3 of at most 5" in caplog.text
    assert "PostgreSQL is back, 7.5 s after it went down." in caplog.text


@pytest.mark.parametrize(("code", "words"), [(-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM"),
                                             (1, "exited with code 1"), (0, "exited with code 0")])
def test_an_exit_status_is_said_in_words(code: int, words: str):
    assert describe_exit(code) == words


class InterruptedPart(FakePart):
    def restart(self) -> None:
        raise KeyboardInterrupt  # Ctrl-C while it starts


def test_a_signal_during_a_restart_is_not_swallowed():
    part = InterruptedPart()
    supervisor, clock = supervised(part)
    part.die()
    supervisor.check()
    clock.now += POLICY.first_delay
    with pytest.raises(KeyboardInterrupt):
        supervisor.check()
