"""One run of the report job: find the changed windows, compute them with Spark, publish them."""

from __future__ import annotations

import argparse
import logging
import time

import psycopg

from restaurant_app.database import describe
from restaurant_app.java_runtime import java_executable
from restaurant_app.replica import wait_until_replayed
from restaurant_app.settings import Settings
from spark_reports.ledger import ReportRun
from spark_reports.result import JobResult, result_line
from spark_reports.store import ReportStore, report_store

log = logging.getLogger("spark_reports")

LONGEST_ERROR = 2000
REPLICA_WAIT_SECONDS = 60.0
"""How long Spark waits for REPORTS_DATABASE_URL to replay the run's scope before the run fails."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_reports", description=__doc__)
    parser.add_argument("--full", action="store_true",
                        help="recompute every report from all orders instead of only the changed windows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    settings = Settings.from_env()
    started = time.monotonic()
    try:
        result = run(settings, full=args.full)
    except psycopg.OperationalError as exc:
        result = JobResult("failed", error=f"PostgreSQL at {describe(settings.database_url)} is unreachable: "
                                        f"{str(exc).strip()}")
        log.error("%s", result.error)
    result.seconds = round(time.monotonic() - started, 2)
    print(result_line(result), flush=True)
    return 1 if result.status == "failed" else 0


def run(settings: Settings, full: bool = False) -> JobResult:
    """Run the job once, under the report lock; a run already going makes this one a no-op."""
    with report_store(settings.database_url) as store:
        if not store.ledger.try_lock():
            log.info("Another report run is still going; this one stops here.")
            return JobResult("skipped")
        report_run = store.start_run(full, settings.report_lateness_seconds,
                                     settings.restaurant_timezone)
        log.info("Report run %d (%s): recomputing %d minute window(s)%s.",
                 report_run.run_id, "full rebuild" if full else "incremental", report_run.minutes,
                 "" if report_run.orders_since is None
                 else f" with orders ingested since {report_run.orders_since:%Y-%m-%d %H:%M:%S %Z}")
        if report_run.minutes == 0:
            store.ledger.finish(report_run, 0, 0, 0)
            log.info("No new orders since the last run; nothing to recompute.")
            return JobResult("succeeded", report_run.run_id)
        return compute_and_publish(settings, store, report_run)


def compute_and_publish(settings: Settings, store: ReportStore, report_run: ReportRun) -> JobResult:
    """Compute and publish the run's windows; on any failure, record it and leave the reports alone."""
    counts: tuple[int | None, int | None] = (None, None)
    try:
        java_executable()
        if settings.reports_database_url:
            # Spark reads there, joining the scope just written here: wait until the replica has
            # replayed it, and with it every order and report committed before it.
            waited = wait_until_replayed(store.conn, settings.reports_database_url, REPLICA_WAIT_SECONDS)
            log.info("Reading orders from the replica at %s, which had caught up after %.1f s.",
                     describe(settings.reports_database_url), waited)
        from spark_reports.stage import stage_reports  # imports pyspark, which takes a while

        counts = stage_reports(settings, report_run)
        windows = store.publish(report_run, *counts)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is recorded in report_runs
        error = error_text(exc)
        store.ledger.fail(report_run, error, *counts)
        log.error("Report run %d failed; the reports stay as they were. %s", report_run.run_id, error)
        return JobResult("failed", report_run.run_id, error=error)
    orders_read, rows_read = counts
    log.info("Report run %d wrote %d window(s) from %d order(s) (%d order lines).",
             report_run.run_id, windows, orders_read, rows_read)
    return JobResult("succeeded", report_run.run_id, windows, orders_read, rows_read)


def error_text(exc: BaseException) -> str:
    """The gist of an error: its message without the Java stack trace."""
    text = str(exc).strip() or type(exc).__name__
    text = text.split("\n\tat ")[0].split("\nJVM stacktrace:")[0].strip()
    return text[:LONGEST_ERROR]

