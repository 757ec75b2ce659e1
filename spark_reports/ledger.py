"""The report runs' ledger (``report_runs``) and the report lock: what the job and the worker's runner share.

The job records its own run (started, succeeded or failed) and the snapshot it reads up to,
which the next run starts from; the runner in the worker records a run that could not say so
itself (killed, or crashed before it could write).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

from restaurant_app.settings import redacted

log = logging.getLogger(__name__)

# Any number will do as long as every report job uses the same one.
REPORT_LOCK_ID = 7_140_816
TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
LOCK_FOR_TRANSACTION = "SELECT pg_advisory_xact_lock(%s)"
WAIT_FOR_LOCK_AT_MOST = "SET LOCAL lock_timeout = '5s'"

FAILURES_BEFORE_SKIPPING = 3
"""Incremental runs that may fail on the same orders, not counting outages; the next run skips them."""
SKIP_RETRY_SECONDS = 3600
"""After a run that recomputed the skipped windows failed on them, the next try waits this long."""

ABANDONED = "The run stopped before finishing (it was killed or crashed)."

ABANDON_RUNS = """
UPDATE report_runs SET status = 'failed', finished_at = clock_timestamp(), outage = true,
       error = concat_ws(' ', error, %s::text)
WHERE status = 'running'
"""

# The last run that read the orders of a scope: one that succeeded, or an incremental one that
# failed. A failed full rebuild changes nothing for the incremental runs, and neither does a
# failure the worker recorded for a job that never started its run (no snapshot). A range
# rebuild read only its days: the orders committed elsewhere since the last run are still unread.
LAST_SCOPED_RUN = """
SELECT run_id, status = 'succeeded', since_run FROM report_runs
WHERE snapshot IS NOT NULL AND mode <> 'range' AND (status = 'succeeded' OR mode = 'incremental')
ORDER BY run_id DESC LIMIT 1
"""

# Incremental runs that started from the same snapshot (all come after that run) and failed
# on their orders: an outage (a part unreachable, a timeout, a job that died) does not count.
FAILURES_FROM = """
SELECT count(*) FROM report_runs
WHERE run_id > coalesce(%(since_run)s::bigint, 0) AND status = 'failed' AND mode = 'incremental'
  AND NOT outage AND snapshot IS NOT NULL AND since_run IS NOT DISTINCT FROM %(since_run)s::bigint
"""

# Whether a run should recompute the skipped windows too: there are some, and no run that tried
# lately failed on its orders.
RETRY_SKIPS = """
SELECT EXISTS (SELECT 1 FROM report_skipped_windows)
   AND NOT EXISTS (SELECT 1 FROM report_runs
                   WHERE retried_skips AND status = 'failed' AND NOT outage
                     AND started_at > now() - %s * interval '1 second')
"""

RUN_WATERMARK = "SELECT run_id, snapshot::text, watermark FROM report_runs WHERE run_id = %s"

START_RUN = """
INSERT INTO report_runs (mode, status, since_run, orders_since, snapshot, watermark, retried_skips,
                         range_start, range_end)
VALUES (%s, 'running', %s, %s, pg_current_snapshot(), clock_timestamp(), %s, %s, %s)
RETURNING run_id, snapshot::text, watermark
"""

NOTE_RUN = "UPDATE report_runs SET error = %s WHERE run_id = %s"

FINISH_RUN = """
UPDATE report_runs SET status = 'succeeded', finished_at = clock_timestamp(),
       windows_written = %s, orders_read = %s, rows_read = %s
WHERE run_id = %s
"""

FAIL_RUN = """
UPDATE report_runs SET status = 'failed', finished_at = clock_timestamp(),
       error = concat_ws(' ', error, %s::text), orders_read = %s, rows_read = %s, outage = %s
WHERE run_id = %s
"""

RECORD_FAILURE = """
INSERT INTO report_runs (mode, status, started_at, finished_at, watermark, error, outage)
VALUES ('incremental', 'failed', %s, clock_timestamp(), clock_timestamp(), %s, true)
"""


@dataclass(frozen=True)
class Watermark:
    """A point in commit order: the snapshot a run took when it started (``pg_current_snapshot()``)."""

    run_id: int
    snapshot: str
    taken_at: datetime


@dataclass(frozen=True)
class Skip:
    """Orders no run will read: ``failures`` runs in a row failed on those committed after ``since``."""

    since: Watermark | None
    """None: from the first order on."""
    until: Watermark
    """The last failed run's snapshot, which the skipping run starts from."""
    failures: int


@dataclass(frozen=True)
class Span:
    """The days a range rebuild recomputes: from ``start`` (a local midnight) up to ``end``, the
    midnight after its last day."""

    start: datetime
    end: datetime


def run_mode(full: bool, span: Span | None) -> str:
    """The run's mode in report_runs."""
    return "range" if span is not None else "full" if full else "incremental"


@dataclass(frozen=True)
class ReportRun:
    """A run in progress: what it reads and how many minute windows it recomputes."""

    run_id: int
    full: bool
    since: Watermark | None
    """It reads the orders committed after this snapshot; None: every order."""
    until: Watermark
    """Its own snapshot: it reads the orders committed by then, and the next run starts here."""
    skip: Skip | None = None
    skipped_windows: int = 0
    retry_skipped: bool = False
    """It recomputes the windows listed in report_skipped_windows as well."""
    minutes: int = 0
    span: Span | None = None
    """A range rebuild's days: it recomputes every window in them from the orders stored now."""

    @property
    def mode(self) -> str:
        return run_mode(self.full, self.span)

    @property
    def by_day(self) -> bool:
        """Whether it recomputes whole days (a full or range rebuild), reading a day at a time."""
        return self.full or self.span is not None


class RunLedger:
    """The job's side of the ledger, on the job's own (autocommit) connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def try_lock(self) -> bool:
        """Take the report lock for the connection's lifetime; False if another run holds it."""
        row = self.conn.execute(TRY_LOCK, (REPORT_LOCK_ID,)).fetchone()
        return bool(row and row[0])

    def start(self, full: bool, span: Span | None = None) -> ReportRun:
        """Mark runs left 'running' as failed, record a new run with its snapshot; call in a transaction.

        A full or range rebuild reads what it rebuilds whatever earlier runs did: no start, no skip.
        """
        self.conn.execute(ABANDON_RUNS, (ABANDONED,))
        rebuild = full or span is not None
        since, skip, after_success = (None, None, False) if rebuild else self._since()
        retry = after_success and self.conn.execute(RETRY_SKIPS, (SKIP_RETRY_SECONDS,)).fetchone()[0]
        run_id, snapshot, taken_at = self.conn.execute(START_RUN, (
            run_mode(full, span), None if since is None else since.run_id,
            None if since is None else since.taken_at, retry,
            None if span is None else span.start, None if span is None else span.end,
        )).fetchone()
        return ReportRun(run_id, full, since, Watermark(run_id, snapshot, taken_at), skip,
                         retry_skipped=retry, span=span)

    def _since(self) -> tuple[Watermark | None, Skip | None, bool]:
        """Where an incremental run starts reading, and the orders it skips, if any.

        After a run that succeeded: its snapshot. After a failed run: where that run started,
        so its orders are read again; but once ``FAILURES_BEFORE_SKIPPING`` runs have failed
        from there on those orders (outages do not count: they retry the same orders however
        long they last), after the last of them, skipping the orders they failed on. Each later
        run then reads only what came after, so a window that always fails cannot make every
        run bigger until all of them time out. The third value: whether the last run succeeded
        (or there was none), after which a run retries the skipped windows.
        """
        last = self.conn.execute(LAST_SCOPED_RUN).fetchone()
        if last is None:
            return None, None, True
        run_id, succeeded, since_run = last
        if succeeded:
            return self._watermark(run_id), None, True
        since = None if since_run is None else self._watermark(since_run)
        failures = self.conn.execute(FAILURES_FROM, {"since_run": since_run}).fetchone()[0]
        if failures < FAILURES_BEFORE_SKIPPING:
            return since, None, False
        until = self._watermark(run_id)
        return until, Skip(since, until, failures), False

    def _watermark(self, run_id: int) -> Watermark:
        return Watermark(*self.conn.execute(RUN_WATERMARK, (run_id,)).fetchone())

    def note(self, run: ReportRun, text: str) -> None:
        """Keep a remark about the run in its ``error`` column, which a failure would add to."""
        self.conn.execute(NOTE_RUN, (redacted(text), run.run_id))

    def finish(self, run: ReportRun, windows: int, orders_read: int, rows_read: int) -> None:
        self.conn.execute(FINISH_RUN, (windows, orders_read, rows_read, run.run_id))

    def fail(self, run: ReportRun, error: str, orders_read: int | None, rows_read: int | None,
             outage: bool) -> None:
        """Record the failure; ``outage``: a part was unavailable, the orders were not at fault."""
        self.conn.execute(FAIL_RUN, (redacted(error), orders_read, rows_read, outage, run.run_id))


def skip_note(skip: Skip, windows: int) -> str:
    """The skip in plain words, for the log and the run's record."""
    after = "every order" if skip.since is None else f"the orders committed after run {skip.since.run_id}"
    return (f"{skip.failures} runs failed on {after}, so this run skips ahead to those"
            f" committed after run {skip.until.run_id}. {windows} minute window(s) may miss skipped"
            " orders until a run recomputes them; they are listed in report_skipped_windows and"
            " tried again after a run succeeds, and python -m spark_reports --full rebuilds everything.")


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
            cursor = await conn.execute(ABANDON_RUNS, (redacted(reason),))
            if cursor.rowcount == 0:
                await conn.execute(RECORD_FAILURE, (started_at, redacted(reason)))
    except psycopg.errors.LockNotAvailable:
        log.warning("Another report job is running; the failure of the last one is not recorded.")
