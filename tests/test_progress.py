"""Progress lines on a terminal and elsewhere, with a fake clock and a fake stream."""

import io

import pytest

from restaurant_app.progress import Progress, duration


class FakeStream(io.StringIO):
    """A stream that says whether it is a terminal."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(progress: Progress, clock: FakeClock, total: int, seconds_each: float) -> None:
    """Do ``total`` units, each taking ``seconds_each``, updating after each."""
    for done in range(1, total + 1):
        clock.now += seconds_each
        progress.update(done)


def test_on_a_terminal_one_line_is_redrawn_in_place_then_ended():
    stream, clock = FakeStream(terminal=True), FakeClock()
    progress = Progress("Publishing orders", 1000, stream=stream, clock=clock)
    run(progress, clock, 500, seconds_each=0.0625)
    drawn = stream.getvalue()
    assert "\n" not in drawn
    assert drawn.count("\r") == 125  # one redraw per 0.2 s (here every 4th update), not one per update
    assert drawn.split("\r")[-1] == "Publishing orders: 500/1,000 (50%), 16/s, 31 s left"
    progress.update(1000)
    progress.finish()
    assert stream.getvalue().endswith("\rPublishing orders: 1,000/1,000 (100%) in 31 s, 32/s\n")


def test_a_shorter_line_on_a_terminal_covers_the_longer_one_before_it():
    stream, clock = FakeStream(terminal=True), FakeClock()
    progress = Progress("Load", 100, stream=stream, clock=clock)
    clock.now += 1
    progress.update(1)
    clock.now += 1
    progress.update(90)
    first, second = stream.getvalue().split("\r")[1:]
    assert first == "Load: 1/100 (1%), 1.0/s, 1 min 39 s left"
    assert second == "Load: 90/100 (90%), 45/s, 0 s left".ljust(len(first))


def test_elsewhere_a_plain_line_at_every_tenth_and_a_final_one():
    stream, clock = FakeStream(terminal=False), FakeClock()
    with Progress("Draining", 1000, stream=stream, clock=clock) as progress:
        run(progress, clock, 1000, seconds_each=0.001)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split(", ")[0] for line in lines[:-1]] == [
        f"Draining: {n * 100:,}/1,000 ({n * 10}%)" for n in range(1, 10)]
    assert lines[0] == "Draining: 100/1,000 (10%), 1,000/s, 1 s left"
    assert lines[-1] == "Draining: 1,000/1,000 (100%) in 1 s, 1,000/s"


def test_elsewhere_slow_work_still_shows_a_line_every_ten_seconds():
    stream, clock = FakeStream(terminal=False), FakeClock()
    progress = Progress("Loading", 1000, stream=stream, clock=clock)
    run(progress, clock, 50, seconds_each=1.0)  # 5% in 50 s
    assert stream.getvalue().splitlines() == [
        f"Loading: {n}/1,000 ({n / 1000:.0%}), 1.0/s, {duration(1000 - n)} left"
        for n in (10, 20, 30, 40, 50)
    ]


def test_no_work_done_yet_has_no_time_left():
    stream, clock = FakeStream(terminal=False), FakeClock()
    progress = Progress("Waiting", 10, stream=stream, clock=clock)
    clock.now += 10
    progress.update(0)
    assert stream.getvalue() == "Waiting: 0/10 (0%), 0.0/s, time left unknown\n"


def test_an_error_on_a_terminal_ends_the_line_without_a_final_summary():
    stream, clock = FakeStream(terminal=True), FakeClock()
    with pytest.raises(TimeoutError), Progress("Draining", 100, stream=stream, clock=clock) as progress:
        clock.now += 1
        progress.update(10)
        raise TimeoutError
    assert stream.getvalue() == "\rDraining: 10/100 (10%), 10/s, 9 s left\n"


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "0 s"), (42, "42 s"), (59.6, "1 min 00 s"), (185, "3 min 05 s"), (3720, "1 h 02 min"),
])
def test_durations_read_plainly(seconds: float, text: str):
    assert duration(seconds) == text
