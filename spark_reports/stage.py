"""The Spark part of a run: read from PostgreSQL, compute, write the staging tables."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from restaurant_app.settings import Settings
from spark_reports.aggregations import Inputs, Reports, build_reports, kept, union_all
from spark_reports.ledger import ReportRun
from spark_reports.session import Jdbc, is_small, one_partition, spark_session
from spark_reports.store import (
    SPARK_ORDER_LINES,
    SPARK_STORED_MINUTE_DISHES,
    SPARK_STORED_MINUTES,
    STAGED_KINDS,
    STAGING_TABLE,
)

SCOPE_DAYS = """
SELECT extract(epoch FROM period_start)::bigint AS day_start,
       extract(epoch FROM period_end)::bigint AS day_end
FROM report_scope WHERE kind = 'day' ORDER BY period_start
"""

ORDER_LINES_OF_DAY = SPARK_ORDER_LINES + """
AND s.period_start >= to_timestamp({start}) AND s.period_start < to_timestamp({end})
"""


def stage_reports(settings: Settings, run: ReportRun, opened: SparkSession | None = None) -> None:
    """Compute the run's windows into the staging table, in the session ``opened`` early if it
    suits the run."""
    with spark_session(settings, run.minutes, opened) as spark:
        # Spark Connect's server holding the password itself: none is sent to it (SPARK_JDBC_PASSWORD).
        send = not (settings.spark_remote and settings.spark_jdbc_password == "server")
        jdbc = Jdbc.from_database_url(settings.database_url, with_password=send)
        reads = Jdbc.from_database_url(settings.reports_database_url or settings.database_url,
                                       with_password=send)
        inputs = read_inputs(spark, reads, run, settings.spark_jdbc_partitions,
                             settings.business_day_starts_hour)
        # A small run's rows are written as one partition, over one connection.
        staged = one_partition(staged_rows(build_reports(inputs)), run.minutes)
        jdbc.append(staged, STAGING_TABLE, None if is_small(run.minutes) else settings.spark_jdbc_partitions)


def staged_rows(reports: Reports) -> DataFrame:
    """Every report row in one frame, marked with its kind, so that one write stages them all."""
    return union_all([getattr(reports, kind).withColumn("staged", F.lit(kind)) for kind in STAGED_KINDS],
                     allow_missing_columns=True)


def read_inputs(spark: SparkSession, jdbc: Jdbc, run: ReportRun, partitions: int,
                day_starts_hour: int = 0) -> Inputs:
    """The run's inputs; the order lines are kept, so that every figure comes from the same rows.

    The order lines are read by ``partitions`` statements in parallel, each taking whole orders.
    Their snapshots may differ by orders committed meanwhile, which does not matter: all read
    the same committed ``report_scope``, and an order committed while they run is not visible in
    the run's snapshot (``until``), so the next run scopes its minute and recomputes it whether
    or not a statement here saw it (as the single statement's orders committed after ``until``).
    A small run then puts each input in one partition (``one_partition``).
    """

    def stored(query: str) -> DataFrame:
        # Read when used: only this job writes reports, so each read finds the same rows.
        # A full rebuild recomputes every window and needs none of them.
        frame = one_partition(jdbc.read(spark, query), run.minutes)
        return frame.limit(0) if run.full else frame

    return Inputs(
        lines=kept(one_partition(read_lines(spark, jdbc, run.by_day, partitions), run.minutes))[0],
        stored_minutes=stored(SPARK_STORED_MINUTES),
        stored_minute_dishes=stored(SPARK_STORED_MINUTE_DISHES),
        day_starts_hour=day_starts_hour,
    )


def read_lines(spark: SparkSession, jdbc: Jdbc, by_day: bool, partitions: int) -> DataFrame:
    """The order lines of the scope's minutes, split in ``partitions`` reads; for a full or range
    rebuild, one query (and partition) per day.

    Read in one piece, every order line of a large history would be one partition, too big
    for the driver's memory in local mode; a day at a time, Spark can keep or spill each alone.
    """
    if not by_day:
        return jdbc.read_split(spark, SPARK_ORDER_LINES, "order_id", partitions)
    days = jdbc.read(spark, SCOPE_DAYS).collect()
    return union_all([jdbc.read(spark, ORDER_LINES_OF_DAY.format(start=start, end=end))
                      for start, end in days])
