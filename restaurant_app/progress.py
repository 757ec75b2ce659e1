"""Progress of long work (``produce-orders``, the bench): done/total, rate and time left.

On a terminal it is one line, redrawn in place with ``\\r``; anywhere else (CI, a pipe, a log
file) a plain line at every tenth of the work, and at least every 10 seconds.
The rate is the average since the start, so the time left is an estimate that settles as work goes on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

TERMINAL_REDRAW_SECONDS = 0.2
PLAIN_EVERY_SECONDS = 10.0
PLAIN_STEPS = 10


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def per_second(rate: float) -> str:
    """``2,013/s``, or ``0.4/s`` for a slow rate."""
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


class Progress:
    """Shows how far ``total`` units of work have got; ``update`` often, then ``finish`` (or use ``with``)."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.clock = clock
        self.terminal = self.stream.isatty()
        self.started = self.shown_at = clock()
        self.done = self.shown_done = 0
        self.width = 0

    def update(self, done: int) -> None:
        """Record that ``done`` units are done, and show it if it is time to."""
        self.done = done
        now = self.clock()
        if done < self.total and self._due(now):
            self._show(self._line(now), now)

    def finish(self) -> None:
        """Show the final line: what was done, in how long, at what rate."""
        now = self.clock()
        took = duration(now - self.started)
        self._show(f"{self.label}: {self._count()} in {took}, {per_second(self._rate(now))}", now, end="\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        elif self.terminal and self.width:
            self.stream.write("\n")  # whatever is printed next starts on a line of its own

    def _due(self, now: float) -> bool:
        if self.terminal:
            return now - self.shown_at >= TERMINAL_REDRAW_SECONDS
        step = PLAIN_STEPS * self.done // max(self.total, 1)
        return (step > PLAIN_STEPS * self.shown_done // max(self.total, 1)
                or now - self.shown_at >= PLAIN_EVERY_SECONDS)

    def _line(self, now: float) -> str:
        rate = self._rate(now)
        left = f"{duration((self.total - self.done) / rate)} left" if rate else "time left unknown"
        return f"{self.label}: {self._count()}, {per_second(rate)}, {left}"

    def _count(self) -> str:
        share = self.done / self.total if self.total else 1.0
        return f"{self.done:,}/{self.total:,} ({share:.0%})"

    def _rate(self, now: float) -> float:
        """Units per second, on average since the start."""
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _show(self, line: str, now: float, end: str = "") -> None:
        if self.terminal:
            self.stream.write("\r" + line.ljust(self.width) + end)
            self.width = 0 if end else len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown_at, self.shown_done = now, self.done
