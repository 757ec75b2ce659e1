"""One run of the report job: find the changed windows, compute them with Spark, publish them."""

from __future__ import annotations

import argparse
import logging
import os
import time
from datetime import date, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import psycopg

from restaurant_app.business_day import date_start
from restaurant_app.database import describe
from restaurant_app.java_runtime import java_executable
from restaurant_app.logs import configure_logging
from restaurant_app.replica import ReplicaBehind, wait_until_replayed
from restaurant_app.settings import Settings, redacted, settings_or_exit
from spark_reports.ledger import FAILURES_BEFORE_SKIPPING, ReportRun, Span, skip_note
from spark_reports.result import JobResult, RunStatus, result_line
from spark_reports.store import ReportStore, report_store
from spark_reports.watchdog import launcher_pid, start_watchdog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("spark_reports")

MODULES = ("spark_reports.job", "spark_reports.stage")
"""What a run imports, pyspark's client with pandas and pyarrow among it: about 0.8 CPU-seconds
that a launcher forking runs from one process (``restaurant_app.fork_server``) pays once."""
LONGEST_ERROR = 2000
REPLICA_WAIT_SECONDS = 60.0
"""How long Spark waits for REPORTS_DATABASE_URL to replay the run's scope before the run fails."""
OUTAGE_SIGNS = (
    "PSQLException: Connection to",  # Spark's JDBC reads and writes, PostgreSQL down
    "An I/O error occurred while sending to the backend",
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode",
    "terminating connection due to administrator command",
    "UNAVAILABLE", "Connection refused",  # the Spark Connect server gone in mid-run
)
"""Words in an error from Spark that show a part unavailable rather than the orders at fault."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_reports", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--full", action="store_true",
                       help="recompute every report from all orders instead of only the changed windows")
    scope.add_argument("--from", dest="first", type=date.fromisoformat, metavar="YYYY-MM-DD",
                       help="recompute the reports of the days from this one to --to, in the"
                            " restaurant's time zone, from the orders stored now")
    parser.add_argument("--to", dest="last", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="the last day --from rebuilds (included)")
    parser.add_argument("--not-before", type=float, metavar="EPOCH_SECONDS",
                        help="load the Spark client, then wait until this Unix time to start the run")
    args = parser.parse_args(argv)
    if (args.first is None) != (args.last is None):
        parser.error("--from and --to go together")
    if args.first is not None and args.first > args.last:
        parser.error(f"--from {args.first} is after --to {args.last}")
    settings = settings_or_exit()
    configure_logging(settings)
    logging.getLogger("py4j").setLevel(max(logging.WARNING, logging.root.level))
    start_watchdog(launcher_pid(os.environ), settings.report_timeout_seconds)
    opened = None if args.not_before is None else prepare_and_wait(settings, args.not_before)
    started = time.monotonic()
    try:
        span = None if args.first is None else day_span(args.first, args.last, settings.restaurant_timezone,
                                                        settings.business_day_starts_hour)
        result = run(settings, full=args.full, span=span, opened=opened)
    except psycopg.OperationalError as exc:
        result = JobResult(RunStatus.FAILED, error=database_error(exc, settings.database_url))
        log.error("%s", result.error)
    finally:
        if opened is not None:  # after the reports are published: not in their way
            stop_quietly(opened)
    result.seconds = round(time.monotonic() - started, 2)
    print(result_line(result), flush=True)
    return 1 if result.status == RunStatus.FAILED else 0


def prepare_and_wait(settings: Settings, moment: float) -> SparkSession | None:
    """Import pyspark (most of a second, with pandas and pyarrow) and open the Spark Connect
    session of a small run, then sleep until ``moment``; return that session, if opened.

    The report timer launches the job this way a little before a run is due, so that the run
    itself, and the snapshot it reads, start on time and without the import's or the session's
    delay. Forked from the worker's fork server, the job has pyspark loaded already, and the
    early launch covers the session and the fork server's own first start.
    """
    from spark_reports.session import open_early

    opened = open_early(settings)
    time.sleep(max(0.0, moment - time.time()))
    return opened


def stop_quietly(spark: SparkSession) -> None:
    """End a session whose run is over; a server gone meanwhile changes nothing for the run."""
    try:
        spark.stop()
    except Exception as exc:  # noqa: BLE001 - the run's outcome is known and recorded already
        log.warning("Could not end the Spark Connect session: %s", error_text(exc))


def database_error(exc: psycopg.OperationalError, url: str) -> str:
    """What went wrong with PostgreSQL: it could not be reached, or the server's own reason."""
    if exc.sqlstate is None:
        return f"PostgreSQL at {describe(url)} is unreachable: {str(exc).strip()}"
    return f"PostgreSQL at {describe(url)} stopped the report job: {str(exc).strip()}"


def day_span(first: date, last: date, zone: str, day_starts_hour: int = 0) -> Span:
    """The business days from ``first`` to ``last`` (included) in ``zone``: the start of the first to
    the start of the one after ``last``."""
    tz = ZoneInfo(zone)
    after = last + timedelta(days=1)
    return Span(date_start(first, tz, day_starts_hour), date_start(after, tz, day_starts_hour))


def run(settings: Settings, full: bool = False, span: Span | None = None,
        opened: SparkSession | None = None) -> JobResult:
    """Run the job once, under the report lock; a run already going makes this one a no-op.

    ``full`` recomputes every report; ``span``, the reports of its days only; a small run
    computes in the Spark session ``opened`` for it, if any.
    """
    with report_store(settings.database_url, settings.report_timeout_seconds) as store:
        if not store.ledger.try_lock():
            log.info("Another report run is still going; this one stops here.")
            return JobResult(RunStatus.SKIPPED)
        report_run = store.start_run(full, span)
        if report_run.skip is not None:
            log.warning("Report run %d: %s", report_run.run_id,
                        skip_note(report_run.skip, report_run.skipped_windows))
        return compute_and_publish(settings, store, report_run, opened)


def compute_and_publish(settings: Settings, store: ReportStore, report_run: ReportRun,
                        opened: SparkSession | None = None) -> JobResult:
    """Find, compute and publish the run's windows; on any failure, record it and leave the reports
    alone (but the closed minutes published before Spark started)."""
    closed = 0
    try:
        report_run = store.fill_scope(report_run, settings.restaurant_timezone,
                                      settings.business_day_starts_hour)
        log_scope(report_run)
        if report_run.minutes == 0:
            store.ledger.finish(report_run, 0, 0, 0)
            log.info("No new orders since the last run; nothing to recompute.")
            return JobResult(RunStatus.SUCCEEDED, report_run.run_id)
        if report_run.since is not None and report_run.span is None:
            closed = close_minutes(store, report_run, settings.report_grace_seconds)
        if not settings.spark_remote:  # a Spark of its own needs Java here; Spark Connect does not
            java_executable()
        if settings.reports_database_url:
            # Spark reads there, joining the scope just written here: wait until the replica has
            # replayed it, and with it every order and report committed before it.
            waited = wait_until_replayed(store.conn, settings.reports_database_url, REPLICA_WAIT_SECONDS)
            log.info("Reading orders from the replica at %s, which had caught up after %.1f s.",
                     describe(settings.reports_database_url), waited)
        from spark_reports.stage import stage_reports  # imports pyspark, which takes a while

        stage_reports(settings, report_run, opened)
        windows, orders_read, rows_read = store.publish(
            report_run, settings.report_grace_seconds, settings.restaurant_timezone,
            settings.business_day_starts_hour)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is recorded in report_runs
        error, outage = error_text(exc), is_outage(exc)
        store.ledger.fail(report_run, error, None, None, outage=outage)
        log.error("Report run %d failed (%s); %s. %s", report_run.run_id,
                  "an outage: the next run reads the same orders again" if outage
                  else f"counted toward skipping these orders after {FAILURES_BEFORE_SKIPPING} such failures",
                  f"its {closed} closed minute report(s) are published, the other reports stay as they were"
                  if closed else "the reports stay as they were", error)
        return JobResult(RunStatus.FAILED, report_run.run_id, error=error)
    log.info("Report run %d wrote %d window(s) from %d order(s) (%d order lines).",
             report_run.run_id, windows, orders_read, rows_read)
    return JobResult(RunStatus.SUCCEEDED, report_run.run_id, windows, orders_read, rows_read)


def close_minutes(store: ReportStore, report_run: ReportRun, grace_seconds: float) -> int:
    """Publish the run's closed minutes from PostgreSQL before Spark starts (``close_minutes``);
    return how many minute reports (each store's and the chain's) it wrote."""
    started = time.monotonic()
    rows = store.close_minutes(report_run, grace_seconds)
    if rows:
        log.info("Report run %d published %d closed minute report(s) (each store's and the chain's) from"
                 " PostgreSQL in %.2f s; Spark recomputes them with the hours, days and insights.",
                 report_run.run_id, rows, time.monotonic() - started)
    return rows


def is_outage(exc: BaseException) -> bool:
    """Whether a run failed because a part was unavailable (PostgreSQL, its replica, the Spark
    Connect server, a timeout), not because of the orders it read."""
    from spark_reports.session import SparkConnectUnavailable  # pyspark is loaded by now

    if isinstance(exc, (psycopg.OperationalError, ReplicaBehind, SparkConnectUnavailable, OSError)):
        return True
    return any(sign in str(exc) for sign in OUTAGE_SIGNS)


def log_scope(run: ReportRun) -> None:
    since = run.since
    if run.span is not None:
        log.info("Report run %d (range rebuild): recomputing the %d minute window(s) from %s to %s"
                 " with the orders stored now.", run.run_id, run.minutes,
                 f"{run.span.start:%Y-%m-%d %H:%M %Z}", f"{run.span.end:%Y-%m-%d %H:%M %Z}")
        return
    log.info("Report run %d (%s): recomputing %d minute window(s) with %s%s.",
             run.run_id, "full rebuild" if run.full else "incremental", run.minutes,
             "every order" if since is None else
             f"the orders committed since run {since.run_id} ({since.taken_at:%Y-%m-%d %H:%M:%S %Z})",
             ", and the windows skipped earlier" if run.retry_skipped else "")


def error_text(exc: BaseException) -> str:
    """The gist of an error: its message without the Java stack trace, and without any token."""
    text = str(exc).strip() or type(exc).__name__
    text = text.split("\n\tat ")[0].split("\nJVM stacktrace:")[0].strip()
    return redacted(text)[:LONGEST_ERROR]
