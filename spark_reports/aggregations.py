"""The reports as Spark DataFrame transformations, free of any reading or writing.

Spark computes the minute windows from order lines, each store's and the chain's, with their
dishes, the customers of their hours and days, and the insights, which compare the recomputed
minutes with the stored minutes around them; a run reads only the orders of the minutes that
changed. PostgreSQL then adds up hours from minutes and days from hours as it publishes them
(``spark_reports.store``, ``ROLLUP_SALES``), and counts their unique customers from
``report_customers``, since those cannot be added up.
Anonymous orders (no ``customer_id``) count as orders but not as customers: the spend per
customer is the revenue of the identified customers' orders (``identified_revenue``) over them.
Every row is a store's (``store_id``) or the whole chain's (``CHAIN_STORE``): each order (and each
order line for the dishes) is counted twice, once for its store and once for the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DecimalType, MapType, StringType, StructField, StructType

from restaurant_app.report_tables import BILL_FIGURES, CHAIN_STORE
from spark_reports.insights import build_insights, trailing_figures

MONEY = DecimalType(24, 2)  # the reports' numeric(24,2), migration 017
BREAKDOWN = MapType(StringType(), MONEY)
BREAKDOWNS = {"revenue_by_channel": "channel", "revenue_by_payment": "payment_method",
              "revenue_by_store": "order_store"}
"""Figures ``{key: the orders' totals}`` by one of the order's columns."""
WINDOW = ("period_start", "store_id")
"""A report row's key within one granularity."""
PAID = "payments_by_method"
"""``{method: what was paid by it}``: a version 2 order's payments, a version 1 order's total."""
ALL_BREAKDOWNS = (*BREAKDOWNS, PAID)
ORDER_LINES = "order_lines"
"""A minute's order lines, staged for the run's count of lines read (``STAGED_COUNTS``)."""
PAYMENTS = ArrayType(StructType([StructField("method", StringType()), StructField("amount", StringType())]))


@dataclass(frozen=True)
class Inputs:
    """What one run reads: order lines of the recomputed minutes and the stored rows around them."""

    lines: DataFrame
    stored_minutes: DataFrame
    stored_minute_dishes: DataFrame
    day_starts_hour: int = 0
    """When the business day starts (``BUSINESS_DAY_STARTS``); day windows start then."""


@dataclass(frozen=True)
class Reports:
    """The rows to stage, one DataFrame per kind (``STAGED_KINDS``)."""

    sales: DataFrame
    dishes: DataFrame
    customers: DataFrame
    insights: DataFrame
    evaluations: DataFrame


def build_reports(inputs: Inputs) -> Reports:
    """Every report row and insight affected by the recomputed minutes."""
    # The recomputed minutes are kept by a Spark job of their own, before the frames that use
    # them: a Spark Connect plan is a tree, so each use would be a copy of their aggregation for
    # the server to analyse again, and analysis was the largest part of a small run's CPU
    # (python -m bench --only reports). A second job keeps the minutes around them with their
    # dishes and the anomalies' trailing figures: in a small run, one job costs far less than
    # a job apiece.
    minutes, minute_dishes = kept(*minute_totals(inputs.lines))
    fresh_keys = minutes.select("period_start").distinct()
    around = replace(parse_stored(inputs.stored_minutes), minutes.drop("unique_customers", ORDER_LINES),
                     fresh_keys)
    context_minutes, context_minute_dishes, scored = kept(
        around,
        replace(inputs.stored_minute_dishes, minute_dishes, fresh_keys),
        trailing_figures(around, fresh_keys),
    )
    hour_keys = (minutes.select(F.date_trunc("hour", "period_start").alias("period_start"))
                 .distinct())
    sales, dishes = finish(minutes, minute_dishes)
    insights, evaluations = build_insights(context_minutes, context_minute_dishes, hour_keys, scored)
    return Reports(
        sales=sales,
        dishes=dishes,
        customers=customers_seen(for_store_and_chain(inputs.lines), inputs.day_starts_hour),
        insights=insights,
        evaluations=evaluations,
    )


KEPT_AS = "kept_as"
"""Which of the frames kept together a row belongs to (``kept``)."""


def kept(*frames: DataFrame) -> list[DataFrame]:
    """Compute ``frames`` now and keep their rows, so each is computed once however often it is used.

    Several frames are computed by one Spark job: each frame's rows become a struct column of its
    own, the rows of all frames are kept as one, and each frame is its own struct's fields of its
    own rows. A job costs the server a plan and a schedule however few rows it holds, which in a
    small run is most of its cost; and since the server expands each struct (``.*``), the client
    never asks it for a frame's columns, a round trip each.
    """
    if len(frames) == 1:
        return [frames[0].localCheckpoint(eager=True)]
    marked = [frame.select(F.lit(number).alias(KEPT_AS), F.struct("*").alias(f"{KEPT_AS}_{number}"))
              for number, frame in enumerate(frames)]
    together = union_all(marked, allow_missing_columns=True).localCheckpoint(eager=True)
    return [together.where(F.col(KEPT_AS) == number).select(f"{KEPT_AS}_{number}.*")
            for number in range(len(frames))]


ORDER_COLUMNS = ("customer_id", "total", "order_discount", "service_charge", "service_charge_is_revenue",
                 "delivery_fee", "tip", "payments", "cancelled", "refunded", *BREAKDOWNS.values())
"""The order's own columns, carried by each of its lines."""


def bill_figures(orders: DataFrame) -> list[Column]:
    """The sums of ``BILL_FIGURES`` over orders (docs/reports.md, "Report figures"); see ``net_revenue``."""
    money = {
        "gross_sales": F.col("gross"),
        "discounts": F.col("line_discounts") + F.col("order_discount"),
        "service_charge": F.col("service_charge"),
        "service_charge_revenue": F.when(F.col("service_charge_is_revenue"), F.col("service_charge"))
        .otherwise(0),
        "delivery_fees": F.col("delivery_fee"),
        "tips": F.col("tip"),
        "cancellations": F.col("cancelled"),
        "refunds": F.col("refunded"),
    }
    return [F.sum(column).cast(MONEY).alias(name) for name, column in money.items()]


def with_net_figures(sales: DataFrame) -> DataFrame:
    """Net sales (gross less discounts) and net revenue (net sales, the service charge that is
    revenue and delivery fees, less cancellations and refunds), from the other figures."""
    net_sales = (F.col("gross_sales") - F.col("discounts")).cast(MONEY)
    return sales.withColumn("net_sales", net_sales).withColumn("net_revenue", (
        F.col("net_sales") + F.col("service_charge_revenue") + F.col("delivery_fees")
        - F.col("cancellations") - F.col("refunds")).cast(MONEY))


def paid_entries() -> Column:
    """An order's payments as (method, amount) entries; a version 1 order paid its total by its method."""
    one = F.array(F.struct(F.col("payment_method").alias("key"), F.col("total").cast(MONEY).alias("value")))
    each = F.transform(F.from_json("payments", PAYMENTS),
                       lambda p: F.struct(p["method"].alias("key"), p["amount"].cast(MONEY).alias("value")))
    return F.when(F.col("payments").isNull(), one).otherwise(each)


def for_store_and_chain(rows: DataFrame) -> DataFrame:
    """Each row (an order or an order line) twice: for its store and for the chain (``store_id``);
    ``order_store`` is its store."""
    return (rows.withColumnRenamed("store_id", "order_store")
            .withColumn("store_id", F.explode(F.array(F.col("order_store"), F.lit(CHAIN_STORE)))))


def minute_totals(lines: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Per minute and store (and chain): orders, items, revenue, the bills' figures, customers and
    breakdowns; and per dish."""
    lines = lines.withColumn("period_start", F.date_trunc("minute", "created_at"))
    # Every line of an order carries the order's own columns, so any line's value is the order's.
    # An order is added up from its lines once, then counted for its store and for the chain.
    orders = for_store_and_chain(lines.groupBy(*WINDOW, "order_id").agg(
        *(F.first(column).alias(column) for column in dict.fromkeys(ORDER_COLUMNS)
          if column != "order_store"),  # the store is the key here, order_store after
        F.sum("quantity").alias("items"),
        F.sum(F.col("unit_price") * F.col("quantity")).alias("gross"),
        F.sum("line_discount").alias("line_discounts"),
        F.count("*").alias("lines"),
    ))
    lines = for_store_and_chain(lines)
    sales = orders.groupBy(*WINDOW).agg(
        F.count("*").alias("orders"),
        F.sum("total").cast(MONEY).alias("gross_revenue"),
        F.count_distinct("customer_id").alias("unique_customers"),
        F.sum(F.when(F.col("customer_id").isNotNull(), F.col("total")).otherwise(0))
        .cast(MONEY).alias("identified_revenue"),
        F.sum("items").cast("long").alias("items_sold"),
        *bill_figures(orders),
        *(summed_by_key(F.collect_list(F.struct(F.col(column).alias("key"), F.col("total").alias("value"))))
          .alias(name) for name, column in BREAKDOWNS.items()),
        summed_by_key(F.flatten(F.collect_list(paid_entries()))).alias(PAID),
        F.sum("lines").cast("long").alias(ORDER_LINES),
    )
    dishes = lines.groupBy(*WINDOW, "dish").agg(
        F.sum("quantity").cast("long").alias("quantity"),
        F.sum(F.col("unit_price") * F.col("quantity") - F.col("line_discount")).cast(MONEY).alias("revenue"),
    )
    return with_net_figures(sales), dishes


def summed_by_key(entries: Column) -> Column:
    """``{key: sum of its values}`` from an array of (key, value) structs, without a shuffle."""
    keys = F.array_distinct(F.transform(entries, lambda entry: entry["key"]))
    return F.map_from_arrays(keys, F.transform(keys, lambda key: F.aggregate(
        F.filter(entries, lambda entry: entry["key"] == key), F.lit(0).cast(MONEY),
        lambda total, entry: (total + entry["value"]).cast(MONEY))))


def parse_stored(stored: DataFrame) -> DataFrame:
    """Stored report rows in the shape of freshly computed totals (breakdowns as maps)."""
    return stored.select(
        *WINDOW,
        F.col("orders").cast("long"),
        F.col("items_sold").cast("long"),
        F.col("gross_revenue").cast(MONEY),
        F.col("identified_revenue").cast(MONEY),
        *(F.col(name).cast(MONEY) for name in BILL_FIGURES),
        *(F.from_json(name, BREAKDOWN).alias(name) for name in ALL_BREAKDOWNS),
    )


def replace(stored: DataFrame, fresh: DataFrame, keys: DataFrame) -> DataFrame:
    """The stored rows of windows not in ``keys``, plus the freshly computed ones."""
    return stored.join(keys, "period_start", "left_anti").unionByName(fresh)


def window_start(unit: str, moment: Column | str, day_starts_hour: int = 0) -> Column:
    """The start of the ``unit`` window holding ``moment``; a day is the business day
    (``restaurant_app.business_day``: local midnight plus that many hours, as PostgreSQL counts it)."""
    if unit != "day" or not day_starts_hour:
        return F.date_trunc(unit, moment)
    shift = F.expr(f"INTERVAL {int(day_starts_hour)} HOURS")
    return F.date_trunc("day", F.col(moment) - shift if isinstance(moment, str) else moment - shift) + shift


def finish(sales: DataFrame, dishes: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Rank the minutes' dishes and give their totals the averages and top dish, as staging rows."""
    by_quantity = Window.partitionBy(*WINDOW).orderBy(F.desc("quantity"), F.asc("dish"))
    ranked = dishes.withColumn("rank", F.row_number().over(by_quantity))
    top = ranked.where(F.col("rank") == 1).select(
        *WINDOW, F.col("dish").alias("top_dish"), F.col("quantity").alias("top_dish_quantity")
    )
    staged = sales.join(top, list(WINDOW)).select(
        F.lit("minute").alias("granularity"),
        *WINDOW,
        (F.col("period_start") + F.expr("INTERVAL 1 MINUTE")).alias("period_end"),
        F.col("orders").cast("long"),
        F.col("items_sold").cast("long"),
        "gross_revenue",
        F.round(F.col("gross_revenue") / F.col("orders"), 2).cast(MONEY).alias("avg_ticket"),
        "unique_customers",
        # None for a window whose orders are all anonymous (no customer to divide by).
        F.round(F.try_divide(F.col("identified_revenue"), F.col("unique_customers")), 2).cast(MONEY)
        .alias("avg_spend_per_customer"),
        "top_dish",
        F.col("top_dish_quantity").cast("long"),
        *(F.to_json(name).alias(name) for name in ALL_BREAKDOWNS),
        "identified_revenue",
        *BILL_FIGURES,
        ORDER_LINES,
    )
    staged_dishes = ranked.select(
        F.lit("minute").alias("granularity"), *WINDOW, "dish",
        F.col("quantity").cast("long"), "revenue", F.col("rank").cast("int"),
    )
    return staged, staged_dishes


def customers_seen(lines: DataFrame, day_starts_hour: int = 0) -> DataFrame:
    """The (hour, store, customer) and (day, store, customer) of the order lines read (each line
    for its store and the chain); anonymous lines have none."""
    identified = lines.where(F.col("customer_id").isNotNull())
    pairs = [
        identified.select(F.lit(unit).alias("granularity"),
                          window_start(unit, "created_at", day_starts_hour).alias("period_start"),
                          "store_id", "customer_id")
        for unit in ("hour", "day")
    ]
    return union_all(pairs).distinct()


def union_all(frames: list[DataFrame], allow_missing_columns: bool = False) -> DataFrame:
    """The rows of ``frames``, columns matched by name; a column some lack is null there if allowed."""
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=allow_missing_columns), frames)
