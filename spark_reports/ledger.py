"""The report runs' ledger (``report_runs``) and the report lock: what the job and the worker's runner share.

The job records its own run (started, succeeded or failed); the runner in the worker records
a run that could not say so itself (killed, or crashed before it could write).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

log = logging.getLogger(__name__)

# Any number will do as long as every report job uses the same one.
REPORT_LOCK_ID = 7_140_816
TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
LOCK_FOR_TRANSACTION = "SELECT pg_advisory_xact_lock(%s)"
WAIT_FOR_LOCK_AT_MOST = "SET LOCAL lock_timeout = '5s'"

ABANDONED = "The run stopped before finishing (it was killed or crashed)."

ABANDON_RUNS = """
UPDATE report_runs SET status = 'failed', finished_at = clock_timestamp(), error = %s
WHERE status = 'running'
"""

LAST_WATERMARK = """
SELECT watermark FROM report_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1
"""

START_RUN = """
INSERT INTO report_runs (mode, status, orders_since, watermark)
VALUES (%s, 'running', %s, clock_timestamp())
RETURNING run_id, watermark
"""

FINISH_RUN = """
UPDATE report_runs SET status = 'succeeded', finished_at = clock_timestamp(),
       windows_written = %s, orders_read = %s, rows_read = %s
WHERE run_id = %s
"""

FAIL_RUN = """
UPDATE report_runs SET status = 'failed', finished_at = clock_timestamp(), error = %s,
       orders_read = %s, rows_read = %s
WHERE run_id = %s
"""

RECORD_FAILURE = """
INSERT INTO report_runs (mode, status, started_at, finished_at, watermark, error)
VALUES ('incremental', 'failed', %s, clock_timestamp(), clock_timestamp(), %s)
"""


@dataclass(frozen=True)
class ReportRun:
    """A run in progress: its id, what it reads and how many minute windows it recomputes."""

    run_id: int
    full: bool
    orders_since: datetime | None
    watermark: datetime
    minutes: int


class RunLedger:
    """The job's side of the ledger, on the job's own (autocommit) connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def try_lock(self) -> bool:
        """Take the report lock for the connection's lifetime; False if another run holds it."""
        row = self.conn.execute(TRY_LOCK, (REPORT_LOCK_ID,)).fetchone()
        return bool(row and row[0])

    def start(self, full: bool, lateness_seconds: int) -> tuple[int, datetime | None, datetime]:
        """Mark runs left 'running' as failed and record a new one: (run id, orders since, watermark).

        Call inside a transaction. An incremental run reads the orders ingested since the last
        successful run's watermark, less ``lateness_seconds``; a full run (or the first) reads all.
        """
        self.conn.execute(ABANDON_RUNS, (ABANDONED,))
        since = None if full else self._orders_since(lateness_seconds)
        run_id, watermark = self.conn.execute(
            START_RUN, ("full" if full else "incremental", since)
        ).fetchone()
        return run_id, since, watermark

    def _orders_since(self, lateness_seconds: int) -> datetime | None:
        row = self.conn.execute(LAST_WATERMARK).fetchone()
        if row is None:
            return None
        return self.conn.execute(
            "SELECT %s::timestamptz - make_interval(secs => %s)", (row[0], lateness_seconds)
        ).fetchone()[0]

    def finish(self, run: ReportRun, windows: int, orders_read: int, rows_read: int) -> None:
        self.conn.execute(FINISH_RUN, (windows, orders_read, rows_read, run.run_id))

    def fail(self, run: ReportRun, error: str, orders_read: int | None, rows_read: int | None) -> None:
        self.conn.execute(FAIL_RUN, (error, orders_read, rows_read, run.run_id))


async def record_failure(database_url: str, started_at: datetime, reason: str) -> None:
    """Record that a report job failed without saying so itself (killed, or crashed early).

    A run it left 'running' is marked failed; if there is none, a failed run is added.
    It waits a few seconds for the report lock, which a killed job's connection holds
    until PostgreSQL notices it is gone, and gives up if another job is still running.
    """
    try:
        connecting = psycopg.AsyncConnection.connect(database_url, connect_timeout=5)
        async with await connecting as conn, conn.transaction():
            await conn.execute(WAIT_FOR_LOCK_AT_MOST)
            await conn.execute(LOCK_FOR_TRANSACTION, (REPORT_LOCK_ID,))
            cursor = await conn.execute(ABANDON_RUNS, (reason,))
            if cursor.rowcount == 0:
                await conn.execute(RECORD_FAILURE, (started_at, reason))
    except psycopg.errors.LockNotAvailable:
        log.warning("Another report job is running; the failure of the last one is not recorded.")
