"""The dashboard's SQL: live figures from the orders tables, and what the Spark reports hold.

"Today" and hours follow the restaurant's clock: each query takes its time zone as a parameter, and
"today" is the business day (``restaurant_app.business_day``), which starts at BUSINESS_DAY_STARTS.
Each figure is a store's or, with the store ``CHAIN_STORE``, the whole chain's (``%(store)s``).
Money comes back as ``numeric`` with two decimals, so it reaches JSON as an exact string.
"""

from typing import Any

from restaurant_app.business_day import SQL_DAY_START, shift
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

# The minute under way as its report will count it, from its stored orders alone (a range of the
# orders' created_at index, each order's lines and cancellations or refunds by key): a provisional
# report with the final one's bill figures (docs/reports.md), read afresh on each request, that the
# report job's final one replaces once the minute has closed.
MINUTE_FROM_ORDERS = """
WITH clock AS (SELECT date_trunc('minute', now()) AS starts, now() AS at),
o AS (
    SELECT o.order_id, o.created_at, o.customer_id, o.channel, o.payment_method, o.total, o.discount,
           o.service_charge, o.service_charge_is_revenue, o.delivery_fee, o.tip
    FROM orders o, clock c
    WHERE o.created_at >= c.starts AND o.created_at < c.starts + interval '1 minute'
      AND (%(store)s = '' OR o.store_id = %(store)s)
),
lines AS (
    SELECT i.dish, i.quantity, i.unit_price * i.quantity AS gross, i.discount
    FROM o JOIN order_items i ON i.order_id = o.order_id AND i.order_created_at = o.created_at
),
dishes AS (SELECT dish, sum(quantity) AS quantity FROM lines GROUP BY dish),
top AS (SELECT dish, quantity FROM dishes ORDER BY quantity DESC, dish COLLATE "C" LIMIT 1),
totals AS (
    SELECT count(*) AS orders, coalesce(sum(total), 0) AS revenue,
           count(DISTINCT customer_id) AS customers,
           coalesce(sum(total) FILTER (WHERE customer_id IS NOT NULL), 0) AS identified_revenue,
           coalesce(sum(discount), 0) AS order_discounts, coalesce(sum(service_charge), 0) AS service_charge,
           coalesce(sum(service_charge) FILTER (WHERE service_charge_is_revenue), 0)
               AS service_charge_revenue,
           coalesce(sum(delivery_fee), 0) AS delivery_fees, coalesce(sum(tip), 0) AS tips
    FROM o
),
sold AS (
    SELECT coalesce(sum(quantity), 0) AS items, coalesce(sum(gross), 0) AS gross_sales,
           coalesce(sum(discount), 0) AS line_discounts
    FROM lines
),
-- A cancellation or refund counts in its order's window (docs/reports.md), as in the final report.
taken AS (
    SELECT coalesce(sum(e.revenue) FILTER (WHERE e.kind = 'cancellation'), 0) AS cancellations,
           coalesce(sum(e.revenue) FILTER (WHERE e.kind = 'refund'), 0) AS refunds
    FROM o JOIN order_events e ON e.order_id = o.order_id
),
net AS (
    SELECT s.gross_sales - s.line_discounts - t.order_discounts AS net_sales FROM sold s, totals t
)
SELECT c.starts AS period_start, c.starts + interval '1 minute' AS period_end, t.orders,
       s.items::bigint AS items_sold,
       t.revenue::numeric(24,2) AS gross_revenue,
       coalesce(round(t.revenue / nullif(t.orders, 0), 2), 0)::numeric(24,2) AS avg_ticket,
       t.customers AS unique_customers,
       round(t.identified_revenue / nullif(t.customers, 0), 2)::numeric(24,2) AS avg_spend_per_customer,
       (SELECT dish FROM top) AS top_dish,
       coalesce((SELECT quantity FROM top), 0)::bigint AS top_dish_quantity,
       (SELECT coalesce(jsonb_object_agg(channel, revenue), '{}') FROM
            (SELECT channel, sum(total)::numeric(24,2) AS revenue FROM o GROUP BY channel) x)
           AS revenue_by_channel,
       (SELECT coalesce(jsonb_object_agg(payment_method, revenue), '{}') FROM
            (SELECT payment_method, sum(total)::numeric(24,2) AS revenue FROM o GROUP BY payment_method) x)
           AS revenue_by_payment,
       s.gross_sales::numeric(24,2) AS gross_sales,
       (s.line_discounts + t.order_discounts)::numeric(24,2) AS discounts,
       n.net_sales::numeric(24,2) AS net_sales,
       t.service_charge::numeric(24,2) AS service_charge,
       t.service_charge_revenue::numeric(24,2) AS service_charge_revenue,
       t.delivery_fees::numeric(24,2) AS delivery_fees, t.tips::numeric(24,2) AS tips,
       x.cancellations::numeric(24,2) AS cancellations, x.refunds::numeric(24,2) AS refunds,
       (n.net_sales + t.service_charge_revenue + t.delivery_fees - x.cancellations - x.refunds)::numeric(24,2)
           AS net_revenue,
       c.at AS computed_at
FROM clock c, totals t, sold s, taken x, net n
"""

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
    return (await web_database.fetch_all(MINUTE_FROM_ORDERS, {"store": store}))[0]


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
