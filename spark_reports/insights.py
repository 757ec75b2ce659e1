"""Insights, computed from the minute reports around the recomputed windows.

Every insight belongs to a window: an hour for the best-selling dish, the revenue comparisons
and the trending dishes, a minute for an anomaly. A run evaluates again every window whose
figures depend on a recomputed minute, and replaces that window's insights. The best-selling
dish is the hour's first ranked dish, which PostgreSQL writes as it publishes the hour
(``spark_reports.store``); Spark computes the others. An insight is its kind and its figures;
the web server writes its sentence when it shows it, in the reader's language and the
restaurant's formats (``restaurant_app/web/language.py``). Each store and the chain have their
own insights, computed alike from their own minutes (``store_id``).
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from restaurant_app.report_tables import INSIGHT_COLUMNS

TRAILING_SECONDS = 3600
TRAILING_MINUTES = 60
ANOMALY_Z_SCORE = 3.0
ANOMALY_MIN_ACTIVE_MINUTES = 10
TREND_MIN_CHANGE = 3
TREND_MIN_RATIO = 1.5

COMPARISONS = (
    # kind, hours back
    ("revenue_vs_previous_hour", 1),
    ("revenue_vs_same_hour_yesterday", 24),
)


def build_insights(
    minutes: DataFrame, minute_dishes: DataFrame, hour_keys: DataFrame, scored: DataFrame,
) -> tuple[DataFrame, DataFrame]:
    """The insights, and the (kind, window_start) pairs evaluated, whose old insights they replace;
    ``scored``: the minutes' ``trailing_figures``.

    An hour's best-selling dish (``top_dish``) is read from its ranked dishes as PostgreSQL
    publishes them (``spark_reports.store``, ``INSERT_TOP_DISHES``).
    """
    minutes = with_hour(minutes)
    hours = minutes.groupBy("store_id", "hour").agg(
        F.sum("gross_revenue").alias("revenue"), F.max("offset").alias("last_offset")
    )
    found: list[DataFrame] = []
    evaluated: list[DataFrame] = []
    for kind, back in COMPARISONS:
        candidates = shifted(hour_keys, back)
        compared = compare_revenue(hours.join(candidates, "hour"), minutes, back)
        found.append(revenue_insights(compared, kind))
        evaluated.append(candidates.select(F.lit(kind).alias("kind"), F.col("hour").alias("window_start")))
        if back == 1:
            found.append(trending_dishes(compared, with_hour(minute_dishes)))
            evaluated += [candidates.select(F.lit(kind).alias("kind"), F.col("hour").alias("window_start"))
                          for kind in ("dish_trending_up", "dish_trending_down")]
    anomalies, anomaly_minutes = minute_anomalies(scored)
    found.append(anomalies)
    evaluated.append(anomaly_minutes)
    insights = reduce(DataFrame.unionByName, [f.select(*INSIGHT_COLUMNS) for f in found])
    return insights, reduce(DataFrame.unionByName, evaluated).distinct()


def with_hour(minutes: DataFrame) -> DataFrame:
    """Add each minute's hour and its offset in minutes from the start of that hour."""
    hour = F.date_trunc("hour", "period_start")
    offset = ((F.unix_seconds("period_start") - F.unix_seconds(hour)) / 60).cast("int")
    return minutes.withColumn("hour", hour).withColumn("offset", offset)


def shifted(hour_keys: DataFrame, back: int) -> DataFrame:
    """The recomputed hours and the hours that compare themselves with them, ``back`` hours later."""
    hours = hour_keys.select(F.col("period_start").alias("hour"))
    later = hours.select((F.col("hour") + interval_hours(back)).alias("hour"))
    return hours.union(later).distinct()


def interval_hours(count: int) -> Column:
    return F.expr(f"INTERVAL {count} HOURS")


def figures(**columns: Column) -> Column:
    """The numbers behind an insight as a JSON object, nulls included."""
    fields = F.struct(*(column.alias(name) for name, column in columns.items()))
    return F.to_json(fields, {"ignoreNullFields": "false"})


def compare_revenue(hours: DataFrame, minutes: DataFrame, back: int) -> DataFrame:
    """Each hour's revenue against the same minutes ``back`` hours earlier.

    An hour still under way (or quiet at its end) is compared up to its last minute with sales.
    """
    earlier = tag_earlier(minutes.select("store_id", "hour", "offset", "gross_revenue"), back)
    return (
        hours.join(earlier.withColumnRenamed("target", "hour"), ["store_id", "hour"], "left")
        .groupBy("store_id", "hour", "revenue", "last_offset")
        .agg(F.sum(F.when(F.col("offset") <= F.col("last_offset"), F.col("gross_revenue"))
                   .otherwise(0)).alias("previous_revenue"))
        .withColumn("window_end", F.timestamp_seconds(
            F.unix_seconds("hour") + (F.col("last_offset") + 1) * 60))
    )


def tag_earlier(minutes: DataFrame, back: int) -> DataFrame:
    """Minute rows keyed by the hour that compares itself with them, ``back`` hours later."""
    return minutes.withColumn("target", F.col("hour") + interval_hours(back)).drop("hour")


def revenue_insights(compared: DataFrame, kind: str) -> DataFrame:
    previous = F.col("previous_revenue")
    change = F.round(F.try_divide((F.col("revenue") - previous) * 100, previous), 1)
    return compared.select(
        "store_id",
        F.lit(kind).alias("kind"),
        F.col("hour").alias("window_start"),
        "window_end",
        F.lit("").alias("subject"),
        figures(revenue=F.col("revenue"), previous_revenue=previous.cast("decimal(16,2)"),
                change_pct=change, minutes=F.col("last_offset") + 1)
        .alias("figures"),
    )


def trending_dishes(compared: DataFrame, dishes: DataFrame) -> DataFrame:
    """Dishes selling clearly more or less than in the same minutes of the previous hour."""
    hours = compared.where(F.col("previous_revenue") > 0).select("store_id", "hour", "last_offset",
                                                                 "window_end")
    # Each minute's dish row counts for its own hour, and for the next hour as "before".
    tagged = dishes.withColumn("before", F.explode(F.array(F.lit(False), F.lit(True)))).withColumn(
        "hour", F.when(F.col("before"), F.col("hour") + interval_hours(1)).otherwise(F.col("hour")))
    both = (
        tagged.join(hours, ["store_id", "hour"])
        .where(~F.col("before") | (F.col("offset") <= F.col("last_offset")))
        .groupBy("store_id", "hour", "dish", "window_end")
        .agg(F.sum(F.when(~F.col("before"), F.col("quantity")).otherwise(0)).alias("quantity"),
             F.sum(F.when(F.col("before"), F.col("quantity")).otherwise(0)).alias("previous_quantity"))
    )
    quantity, previous = F.col("quantity"), F.col("previous_quantity")
    up = (quantity - previous >= TREND_MIN_CHANGE) & (quantity >= previous * TREND_MIN_RATIO)
    down = (previous - quantity >= TREND_MIN_CHANGE) & (previous >= quantity * TREND_MIN_RATIO)
    trending = both.where(up | down).withColumn("rising", up)
    return trending.select(
        "store_id",
        F.when(F.col("rising"), "dish_trending_up").otherwise("dish_trending_down").alias("kind"),
        F.col("hour").alias("window_start"),
        "window_end",
        F.col("dish").alias("subject"),
        figures(dish=F.col("dish"), quantity=quantity, previous_quantity=previous,
                change=quantity - previous).alias("figures"),
    )


def trailing_figures(minutes: DataFrame, minute_keys: DataFrame) -> DataFrame:
    """Each minute evaluated for an anomaly, with its trailing hour's revenue, squares and count.

    The trailing hour is the 60 minutes before, a minute without sales counting as zero. A
    minute is evaluated again whenever a recomputed minute lies in it or in its trailing hour.
    Each minute's row is copied into the bucket of its own hour and of the next one, so the
    window functions see a full trailing hour while still running in parallel by hour. The
    caller keeps the result (``kept``), in the Spark job that keeps the minutes.
    """
    fresh = minute_keys.withColumn("fresh", F.lit(True))
    rows = (with_hour(minutes).join(fresh, "period_start", "left")
            .withColumn("epoch", F.unix_seconds("period_start"))
            .withColumn("bucket", F.explode(F.array(F.col("hour"), F.col("hour") + interval_hours(1)))))
    # Near a recomputed minute of any store (every store's rows of the bucket); trailing figures per store.
    any_store = Window.partitionBy("bucket").orderBy("epoch")
    trailing = Window.partitionBy("bucket", "store_id").orderBy("epoch").rangeBetween(-TRAILING_SECONDS, -60)
    revenue = F.col("gross_revenue")
    return (
        rows.withColumn("near_fresh", F.max(F.when(F.col("fresh"), F.col("epoch")))
                        .over(any_store.rangeBetween(-TRAILING_SECONDS, 0)))
        .withColumn("total", F.sum(revenue).over(trailing))
        .withColumn("squares", F.sum(revenue * revenue).over(trailing))
        .withColumn("active", F.count("*").over(trailing))
        .where((F.col("bucket") == F.col("hour")) & F.col("near_fresh").isNotNull())
        .select("period_start", "store_id", "gross_revenue", "total", "squares", "active")
    )


def minute_anomalies(scored: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Minutes whose revenue is far from the trailing hour's, by z-score; and the minutes
    evaluated, with their ``trailing_figures``."""
    revenue = F.col("gross_revenue")
    mean = F.col("total").cast("double") / TRAILING_MINUTES
    variance = F.col("squares").cast("double") / TRAILING_MINUTES - mean * mean
    scored = (scored.withColumn("mean", mean)
              .withColumn("std", F.sqrt(F.greatest(variance, F.lit(0.0))))
              .withColumn("z", F.when(F.col("std") > 0,
                                      (revenue.cast("double") - F.col("mean")) / F.col("std"))))
    unusual = scored.where((F.col("active") >= ANOMALY_MIN_ACTIVE_MINUTES)
                           & (F.abs(F.col("z")) >= ANOMALY_Z_SCORE))
    insights = unusual.select(
        "store_id",
        F.lit("anomalous_minute").alias("kind"),
        F.col("period_start").alias("window_start"),
        (F.col("period_start") + F.expr("INTERVAL 1 MINUTE")).alias("window_end"),
        F.lit("").alias("subject"),
        figures(revenue=revenue, trailing_mean=F.round("mean", 2), trailing_std=F.round("std", 2),
                z_score=F.round("z", 2), active_minutes=F.col("active")).alias("figures"),
    )
    evaluated = scored.select(F.lit("anomalous_minute").alias("kind"),
                              F.col("period_start").alias("window_start"))
    return insights, evaluated
