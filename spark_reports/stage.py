"""The Spark part of a run: read from PostgreSQL, compute, write the staging tables."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from restaurant_app.database_reports import (
    SPARK_ORDER_LINES,
    SPARK_STORED_HOUR_DISHES,
    SPARK_STORED_HOURS,
    SPARK_STORED_MINUTE_DISHES,
    SPARK_STORED_MINUTES,
    ReportRun,
)
from restaurant_app.settings import Settings
from spark_reports.compute import Inputs, build_reports
from spark_reports.session import Jdbc, start_spark


def stage_reports(settings: Settings, run: ReportRun) -> tuple[int, int]:
    """Compute the run's windows into the staging tables; return (orders read, order lines read)."""
    spark = start_spark(settings)
    try:
        jdbc = Jdbc.from_database_url(settings.database_url)
        inputs = read_inputs(spark, jdbc, run)
        counts = inputs.lines.select("order_id").distinct().count(), inputs.lines.count()
        reports = build_reports(inputs)
        for frame, table in (
            (reports.sales, "report_staging_sales"),
            (reports.dishes, "report_staging_dishes"),
            (reports.customers, "report_staging_customers"),
            (reports.insights, "report_staging_insights"),
            (reports.evaluations, "report_staging_evaluations"),
        ):
            jdbc.append(frame, table)
        return counts
    finally:
        spark.stop()


def read_inputs(spark: SparkSession, jdbc: Jdbc, run: ReportRun) -> Inputs:
    """Read each input once and keep it, so that every figure comes from the same rows."""

    def stored(query: str) -> DataFrame:
        frame = jdbc.read(spark, query)
        # A full rebuild recomputes every window, so it needs none of the stored rows.
        return frame.limit(0) if run.full else kept(frame)

    return Inputs(
        lines=kept(jdbc.read(spark, SPARK_ORDER_LINES)),
        stored_minutes=stored(SPARK_STORED_MINUTES),
        stored_minute_dishes=stored(SPARK_STORED_MINUTE_DISHES),
        stored_hours=stored(SPARK_STORED_HOURS),
        stored_hour_dishes=stored(SPARK_STORED_HOUR_DISHES),
    )


def kept(frame: DataFrame) -> DataFrame:
    """Read ``frame`` now and keep the rows, so later uses do not query PostgreSQL again."""
    return frame.localCheckpoint(eager=True)
