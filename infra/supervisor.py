"""Watching ``make run``'s processes and starting again any that exits while it should run.

Contract: a ``Supervised`` part says whether it has exited (``exited``: None while it runs, else
what happened, in words) and can start again (``restart``: start it and wait until it is ready,
raising if it cannot). The supervisor checks every part every ``interval`` seconds; a part found
down is started again after a delay that doubles with each restart in the last ``period``
(``first_delay``, twice that, four times … up to ``longest_delay``). A part that had to be restarted
``most_restarts`` times within ``period`` and goes down again is given up on: ``check`` raises
``GaveUp`` and ``make run`` stops. Stopping the parts is not its business: whoever started them
stops them, in order, once the watch has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from restaurant_app.errors import PipelineError

log = logging.getLogger("infra")


class Supervised(Protocol):
    """A process the supervisor keeps running."""

    name: str

    def exited(self) -> str | None:
        """None while it runs; else what happened to it, in words ("was killed by SIGKILL")."""

    def restart(self) -> None:
        """Start it again and wait until it is ready; raise if it cannot."""


class GaveUp(PipelineError):
    """A part went down more often than the policy allows; the message says which and how often."""


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before a restart, and how many restarts a period allows."""

    first_delay: float = 1.0
    longest_delay: float = 60.0
    most_restarts: int = 5
    period: float = 600.0

    def delay(self, recent_restarts: int) -> float:
        """The wait before the next restart of a part restarted ``recent_restarts`` times lately."""
        return min(self.longest_delay, self.first_delay * 2 ** recent_restarts)


@dataclass
class _Watched:
    part: Supervised
    restarts: deque[float] = field(default_factory=deque)
    """When it was restarted, within the policy's period."""
    down_since: float | None = None
    due: float | None = None
    """When its next restart is due; None while it runs."""


@dataclass(frozen=True)
class Part:
    """A ``Supervised`` made of a name and two functions."""

    name: str
    exited: Callable[[], str | None]
    restart: Callable[[], None]


class Supervisor:
    """Restarts the parts it was given when they exit; see the module's docstring."""

    def __init__(self, policy: RestartPolicy = RestartPolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._watched: list[_Watched] = []

    def add(self, part: Supervised) -> None:
        self._watched.append(_Watched(part))

    @property
    def parts(self) -> list[Supervised]:
        return [watched.part for watched in self._watched]

    def watch(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Check the parts every ``interval`` seconds until ``stop`` is set (or ``GaveUp`` is raised)."""
        while not stop.wait(interval):
            self.check()

    def check(self) -> None:
        """Notice the parts that went down, and restart those whose delay is over."""
        for watched in self._watched:
            if watched.due is None:
                self._notice(watched)
            elif self.clock() >= watched.due:
                self._restart(watched)

    def _notice(self, watched: _Watched) -> None:
        what = watched.part.exited()
        if what is None:
            return
        now = self.clock()
        while watched.restarts and watched.restarts[0] <= now - self.policy.period:
            watched.restarts.popleft()
        recent = len(watched.restarts)
        if recent >= self.policy.most_restarts:
            raise GaveUp(f"{watched.part.name} {what}, after {recent} restarts in the last"
                         f" {self.policy.period / 60:.0f} minutes; not restarting it again.")
        if watched.down_since is None:
            watched.down_since = now
        watched.due = now + self.policy.delay(recent)
        log.warning("%s %s; starting it again in %.0f s (restart %d of at most %d in %.0f minutes).",
                    watched.part.name, what, watched.due - now, recent + 1, self.policy.most_restarts,
                    self.policy.period / 60)

    def _restart(self, watched: _Watched) -> None:
        watched.restarts.append(self.clock())
        watched.due = None
        try:
            watched.part.restart()
        except Exception as exc:  # noqa: BLE001 - any failure to start is retried, within the bound
            log.error("%s did not start again: %s", watched.part.name, exc)
            return
        down = self.clock() - (watched.down_since or self.clock())
        watched.down_since = None
        log.warning("%s is back, %.1f s after it went down.", watched.part.name, down)
