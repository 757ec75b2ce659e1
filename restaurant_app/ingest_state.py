"""What ``/health`` says about ingest: set by the persistence agent, read by the web."""

import time
from dataclasses import dataclass


@dataclass
class IngestState:
    """What ``/health`` says about ingest: whether a batch is held by an error, and which."""

    stalled_since: float | None = None
    error: str | None = None

    def stalled(self, error: str) -> None:
        self.stalled_since = self.stalled_since or time.time()
        self.error = error

    def flowing(self) -> None:
        self.stalled_since = self.error = None


ingest_state = IngestState()
