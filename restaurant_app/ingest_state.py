"""What ``/health`` says about ingest: set by the agent and the dead-letter publisher, read by the web."""

import time
from dataclasses import dataclass

from prometheus_client import Gauge

from restaurant_app.metrics import registry
from restaurant_app.worker import settings


@dataclass
class IngestState:
    """What ``/health`` says about ingest: whether a batch is held by an error, and which.

    An error nobody foresaw shows at once; a cause that may pass by itself (PostgreSQL away,
    the dead-letter topic refusing) once it has held the batch ``alarm_seconds``.
    """

    alarm_seconds: float
    stalled_since: float | None = None
    error: str | None = None

    def stalled(self, error: str) -> None:
        self.stalled_since = self.stalled_since or time.time()
        self.error = error

    def held(self, error: str, since: float) -> None:
        """The batch is held by ``error`` since ``since``: shown once that is ``alarm_seconds`` ago."""
        if time.time() - since >= self.alarm_seconds:
            self.stalled_since = min(self.stalled_since or since, since)
            self.error = f"a batch has been held for {time.time() - since:.0f} s: {error}"

    def flowing(self) -> None:
        self.stalled_since = self.error = None

    def held_seconds(self) -> float:
        """How long the batch /health names has been held; 0 while orders flow."""
        return time.time() - self.stalled_since if self.error and self.stalled_since else 0.0


ingest_state = IngestState(settings.held_batch_alarm_seconds)

Gauge("restaurant_ingest_held_seconds",
      "Seconds the batch that /health names has been held by an error (PostgreSQL away, the"
      " dead-letter topic refusing, after HELD_BATCH_ALARM_SECONDS; an unforeseen error at once);"
      " 0 while orders flow.", registry=registry).set_function(ingest_state.held_seconds)
