"""The dashboard's SQL: live figures from the orders tables, and what the Spark reports hold.

"Today" and hours follow the restaurant's clock: each query takes its time zone as a parameter, and
"today" is the business day (``restaurant_app.business_day``), which starts at BUSINESS_DAY_STARTS.
Each figure is a store's or, with the store ``CHAIN_STORE``, the whole chain's (``%(store)s``).
Money comes back as ``numeric`` with two decimals, so it reaches JSON as an exact string.
"""

from decimal import Decimal
from typing import Any

from restaurant_app.business_day import SQL_DAY_START, shift
from restaurant_app.minute_figures import MINUTE_SALES
from restaurant_app.report_tables import BILL_FIGURES, listed
from restaurant_app.worker import web_database

# An order of the store asked for; every order when the chain is asked for.
OF_STORE = "(%(store)s = '' OR store_id = %(store)s)"
DAY_START = SQL_DAY_START.format(moment="c.now", shift="c.shift", zone="c.zone")
YESTERDAY_START = SQL_DAY_START.format(moment="date_subtract(c.now, interval '1 day', c.zone)",
                                       shift="c.shift", zone="c.zone")
CLOCK = "clock AS (SELECT now() AS now, %(zone)s::text AS zone, %(shift)s::interval AS shift)"

# Today so far against the same stretch of yesterday, in the restaurant's time zone. The items
# are the lines of the same orders, read by their order's created_at (order_items' partition key)
# in one range rather than order by order: a tenth of the time with 6,500 orders a day so far.
TODAY_AGAINST_YESTERDAY = f"""
WITH {CLOCK},
periods AS (
    SELECT 'today' AS period, {DAY_START} AS starts, c.now AS ends
    FROM clock c
    UNION ALL
    SELECT 'yesterday', {YESTERDAY_START}, date_subtract(c.now, interval '1 day', c.zone)
    FROM clock c
)
SELECT p.period, p.starts, p.ends, o.orders, o.revenue, i.items, o.avg_ticket, o.unique_customers,
       i.gross_sales, (o.billed_revenue - e.taken)::numeric(24,2) AS net_revenue
FROM periods p
CROSS JOIN LATERAL (
    SELECT count(*) AS orders, coalesce(sum(total), 0)::numeric(24,2) AS revenue,
           coalesce(round(avg(total), 2), 0)::numeric(24,2) AS avg_ticket,
           count(DISTINCT customer_id) AS unique_customers,
           coalesce(sum(total - CASE WHEN service_charge_is_revenue THEN 0 ELSE service_charge END), 0)
               AS billed_revenue
    FROM orders WHERE created_at >= p.starts AND created_at <= p.ends AND {OF_STORE}
) o
CROSS JOIN LATERAL (
    SELECT coalesce(sum(quantity), 0)::bigint AS items,
           coalesce(sum(unit_price * quantity), 0)::numeric(24,2) AS gross_sales
    FROM order_items
    WHERE order_created_at >= p.starts AND order_created_at <= p.ends
      AND (%(store)s = '' OR order_id IN (
          SELECT order_id FROM orders WHERE created_at >= p.starts AND created_at <= p.ends
                                        AND store_id = %(store)s))
) i
CROSS JOIN LATERAL (
    SELECT coalesce(sum(revenue), 0) AS taken FROM order_events
    WHERE order_created_at >= p.starts AND order_created_at <= p.ends AND {OF_STORE}
) e
"""
"""Gross sales and net revenue as the reports define them (docs/reports.md, "Report figures"): the bills'
totals less a service charge that went to the staff are net sales + service charge revenue +
delivery fees, from which the cancellations and refunds of the period's orders are taken."""

# Today's revenue by channel and by payment method.
TODAY_BY_CHANNEL_AND_PAYMENT = f"""
WITH {CLOCK},
today AS (
    SELECT o.* FROM orders o, clock c
    WHERE o.created_at >= {DAY_START} AND o.created_at <= c.now AND {OF_STORE}
)
SELECT 'channel' AS breakdown, channel AS name, count(*) AS orders,
       sum(total)::numeric(24,2) AS revenue
FROM today GROUP BY channel
UNION ALL
SELECT 'payment', payment_method, count(*), sum(total)::numeric(24,2)
FROM today GROUP BY payment_method
UNION ALL
SELECT 'store', store_id, count(*), sum(total)::numeric(24,2)
FROM today GROUP BY store_id
ORDER BY breakdown, revenue DESC, name
"""

# Revenue and orders in each of the last N minutes, quiet ones as zero; the last is under way.
MINUTES = f"""
WITH clock AS (
    SELECT date_trunc('minute', now()) AS current,
           date_trunc('minute', now()) - (%(minutes)s::integer - 1) * interval '1 minute' AS first
),
sales AS (
    SELECT date_trunc('minute', o.created_at) AS minute, count(*) AS orders, sum(o.total) AS revenue
    FROM orders o, clock c
    WHERE o.created_at >= c.first AND o.created_at < c.current + interval '1 minute' AND {OF_STORE}
    GROUP BY 1
)
SELECT m.minute, coalesce(s.orders, 0) AS orders,
       coalesce(s.revenue, 0)::numeric(24,2) AS revenue,
       m.minute = c.current AS provisional
FROM clock c
CROSS JOIN generate_series(c.first, c.current, interval '1 minute') AS m (minute)
LEFT JOIN sales s ON s.minute = m.minute
ORDER BY m.minute
"""

# The minute under way as its report will count it, from its stored orders alone: a provisional
# report computed by the query that publishes a closed minute (restaurant_app.minute_figures),
# read afresh on each request, that the report job's final one replaces once the minute has closed.
CURRENT_MINUTE = """
SELECT date_trunc('minute', now()) AS period_start,
       date_trunc('minute', now()) + interval '1 minute' AS period_end
"""
UNDER_WAY_FIGURES = (
    "orders", "items_sold", "gross_revenue", "avg_ticket", "unique_customers", "avg_spend_per_customer",
    "top_dish", "top_dish_quantity", "revenue_by_channel", "revenue_by_payment", *BILL_FIGURES,
)
MINUTE_FROM_ORDERS = f"""
SELECT c.period_start, c.period_end, {listed(UNDER_WAY_FIGURES, "m.")}, now() AS computed_at
FROM ({CURRENT_MINUTE}) c LEFT JOIN ({MINUTE_SALES.replace("{minutes}", CURRENT_MINUTE)}) m ON true
"""
NO_ORDERS: dict[str, Any] = {
    **dict.fromkeys(("orders", "items_sold", "unique_customers", "top_dish_quantity"), 0),
    **dict.fromkeys(("gross_revenue", "avg_ticket", *BILL_FIGURES), Decimal("0.00")),
    "revenue_by_channel": {}, "revenue_by_payment": {},
}
"""The figures of a minute without orders so far, where the query has none."""

# The Spark job's dish ranking for the hour and the day under way, with when it was computed.
CURRENT_DISHES = f"""
WITH {CLOCK},
windows AS (
    SELECT 'hour' AS granularity, date_trunc('hour', c.now, c.zone) AS period_start FROM clock c
    UNION ALL
    SELECT 'day', {DAY_START} FROM clock c
)
SELECT w.granularity, w.period_start, s.computed_at, d.dish, d.quantity,
       d.revenue::numeric(24,2) AS revenue, d.rank
FROM windows w
LEFT JOIN report_sales s ON s.granularity = w.granularity AND s.period_start = w.period_start
    AND s.store_id = %(store)s
LEFT JOIN report_dishes d ON d.granularity = w.granularity AND d.period_start = w.period_start
    AND d.store_id = %(store)s AND d.rank <= %(limit)s
ORDER BY w.granularity, d.rank
"""

LATEST_INSIGHTS = """
SELECT kind, subject, window_start, window_end, message, figures, computed_at
FROM report_insights
WHERE store_id = %(store)s
ORDER BY window_start DESC, kind, subject
LIMIT %(limit)s
"""

INGEST_AND_REJECTIONS = """
SELECT (SELECT count(*) FROM orders WHERE ingested_at > now() - interval '1 minute')
           AS orders_last_minute,
       (SELECT count(*) FROM orders WHERE ingested_at > now() - interval '5 minutes')
           AS orders_last_5_minutes,
       (SELECT max(ingested_at) FROM orders) AS last_ingested_at,
       (SELECT count(*) FROM rejected_orders WHERE rejected_at > now() - interval '1 hour')
           AS rejections_last_hour
"""

# The last finished run; "ready after" counts from the end of the minute before it started.
LAST_FINISHED_RUN = """
SELECT run_id, mode, status, started_at, finished_at, windows_written, left(error, 300) AS error,
       round(extract(epoch FROM finished_at - started_at), 1)::float8 AS duration_seconds,
       round(extract(epoch FROM finished_at - date_trunc('minute', started_at)), 1)::float8
           AS ready_after_minute_seconds,
       EXISTS (SELECT FROM report_runs WHERE status = 'running') AS another_running
FROM report_runs
WHERE status <> 'running'
ORDER BY run_id DESC
LIMIT 1
"""

# Minute windows that may miss orders a report run skipped after repeated failures, until a run
# recomputes them (spark_reports/ledger.py).
SKIPPED_COUNT = """
SELECT count(*)::int AS count, min(period_start) AS oldest FROM report_skipped_windows
"""

RECENT_REJECTIONS = """
SELECT count(*) OVER () AS total, rejected_at, topic, kafka_partition AS partition,
       kafka_offset AS offset, reason
FROM rejected_orders
WHERE rejected_at > now() - make_interval(hours => %s)
ORDER BY id DESC
LIMIT %s
"""


async def today(zone: str, store: str, day_starts_hour: int = 0) -> dict[str, Any]:
    """Today (the business day) so far and the same stretch of yesterday, with today's channels,
    payments and stores."""
    clock = {"zone": zone, "shift": shift(day_starts_hour), "store": store}
    periods = await web_database.fetch_all(TODAY_AGAINST_YESTERDAY, clock)
    parts = await web_database.fetch_all(TODAY_BY_CHANNEL_AND_PAYMENT, clock)
    by_period = {row.pop("period"): row for row in periods}
    return {
        "today": by_period["today"],
        "yesterday": by_period["yesterday"],
        "by_channel": [without(row, "breakdown") for row in parts if row["breakdown"] == "channel"],
        "by_payment": [without(row, "breakdown") for row in parts if row["breakdown"] == "payment"],
        "by_store": [without(row, "breakdown") for row in parts if row["breakdown"] == "store"],
    }


async def minutes(hours: int, store: str) -> list[dict[str, Any]]:
    return await web_database.fetch_all(MINUTES, {"minutes": hours * 60, "store": store})


async def minute_under_way(store: str) -> dict[str, Any]:
    [row] = await web_database.fetch_all(MINUTE_FROM_ORDERS, {"store": store})
    return row if row["orders"] else {**row, **NO_ORDERS}


async def current_dishes(zone: str, limit: int, store: str, day_starts_hour: int = 0) -> dict[str, Any]:
    """The report of the hour and of the business day under way: its dishes, or none if not computed yet."""
    rows = await web_database.fetch_all(CURRENT_DISHES, {"zone": zone, "shift": shift(day_starts_hour),
                                                     "limit": limit, "store": store})
    windows: dict[str, Any] = {}
    for row in rows:
        window = windows.setdefault(row["granularity"], {
            "period_start": row["period_start"], "computed_at": row["computed_at"], "dishes": [],
        })
        if row["dish"] is not None:
            window["dishes"].append({key: row[key] for key in ("dish", "quantity", "revenue", "rank")})
    return windows


async def latest_insights(limit: int, store: str) -> list[dict[str, Any]]:
    return await web_database.fetch_all(LATEST_INSIGHTS, {"limit": limit, "store": store})


async def pipeline() -> dict[str, Any]:
    """Ingest rate, rejections of the last hour, the last report run and the skipped windows."""
    counts = (await web_database.fetch_all(INGEST_AND_REJECTIONS))[0]
    runs = await web_database.fetch_all(LAST_FINISHED_RUN)
    skipped = (await web_database.fetch_all(SKIPPED_COUNT))[0]
    return {**counts, "last_run": runs[0] if runs else None, "skipped_windows": skipped}


async def recent_rejections(hours: int, limit: int) -> dict[str, Any]:
    rows = await web_database.fetch_all(RECENT_REJECTIONS, (hours, limit))
    return {
        "total": rows[0]["total"] if rows else 0,
        "rejections": [without(row, "total") for row in rows],
    }


def without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != key}
