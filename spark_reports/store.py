"""The report job's PostgreSQL: the windows a run recomputes, what Spark reads, and the publish step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

import psycopg

from restaurant_app.business_day import SQL_DAY_START, shift
from restaurant_app.minute_figures import MINUTE_DISHES, MINUTE_SALES, TAKEN_BACK
from restaurant_app.report_tables import (
    BILL_FIGURES,
    CHAIN_STORE,
    DISH_COLUMNS,
    INSIGHT_COLUMNS,
    SALES_BREAKDOWNS,
    SALES_FIGURES,
    SALES_KEY,
    SALES_STAMPS,
    listed,
)
from spark_reports.ledger import ReportRun, RunLedger, Skip, Span, skip_note

# Hours whose reports or insights read the minutes of a recomputed hour: the hour itself, the
# next hour and the same hour the next day (comparisons), and the hours those compare with.
CONTEXT_HOUR_SHIFTS = [-24, -23, -1, 0, 1, 23, 24]
DISH_CONTEXT_HOUR_SHIFTS = (-1, 0, 1)
"""The hours whose minutes' dishes a run reads: the recomputed hours, the hour before (trending
dishes) and the hour after (which compares its dishes with a recomputed hour)."""

STAGING_TABLE = "report_staging"
STAGED_KINDS = ("sales", "dishes", "customers", "insights", "evaluations")
"""Where Spark writes every report row, each marked with its kind (``staged``); a view per kind
(``report_staging_sales`` ...) is what the publish step moves into the reports."""

IDLE_IN_TRANSACTION_TIMEOUT = "60s"
"""The job's transactions only send statements: one idle this long belongs to a hung job."""
CLIENT_CHECK_INTERVAL = "2s"
"""How often PostgreSQL checks, during a statement, that the job is still connected."""

# The job's connection gives up what it holds when the job hangs or dies: a statement may take
# at most the whole run's time, a transaction may not sit idle, and a statement in progress
# stops within seconds of the job's death (else it would hold the report lock until it ends).
SESSION_LIMITS = """
SELECT set_config('statement_timeout', %s, false),
       set_config('idle_in_transaction_session_timeout', %s, false),
       set_config('client_connection_check_interval', %s, false)
"""

# An order belongs to the first run whose snapshot sees its transaction committed: its xid
# (orders.xid, the inserting transaction) is visible in the snapshot of that run (until) and
# not in the snapshot of the run it follows (since). A later snapshot sees all an earlier one
# saw, so each committed order falls to exactly one run, however long after its insert it
# committed; a transaction still open when a run takes its snapshot is not visible in it, and
# goes to the next run. Every xid below a snapshot's xmin is visible in it and every xid
# visible in it is below its xmax, so the range on orders_xid_idx reads only the orders of
# transactions still running at since or begun after it (a long-open transaction anywhere on
# the server holds xmin back and widens it), and the visibility tests sort those.
COMMITTED_BETWEEN = """
o.xid >= pg_snapshot_xmin(%(since)s::pg_snapshot) AND o.xid < pg_snapshot_xmax(%(until)s::pg_snapshot)
AND NOT pg_visible_in_snapshot(o.xid, %(since)s::pg_snapshot)
AND pg_visible_in_snapshot(o.xid, %(until)s::pg_snapshot)
"""

# The orders committed by until, with those stored before migration 004 (no xid).
COMMITTED_BY = "(o.xid IS NULL OR pg_visible_in_snapshot(o.xid, %(until)s::pg_snapshot))"

SCOPE_ALL_MINUTES = """
INSERT INTO report_scope (kind, period_start, period_end)
SELECT DISTINCT 'minute', date_trunc('minute', o.created_at),
       date_trunc('minute', o.created_at) + interval '1 minute'
FROM orders o
"""

SCOPE_NEW_MINUTES = SCOPE_ALL_MINUTES + "WHERE " + COMMITTED_BETWEEN

# A cancellation or refund counts in its order's window: a new one reopens its order's minute.
SCOPE_NEW_EVENT_MINUTES = """
INSERT INTO report_scope (kind, period_start, period_end)
SELECT DISTINCT 'minute', date_trunc('minute', o.order_created_at),
       date_trunc('minute', o.order_created_at) + interval '1 minute'
FROM order_events o
WHERE """ + COMMITTED_BETWEEN + """
ON CONFLICT (kind, period_start) DO NOTHING
"""

_SKIP_MINUTES = """
INSERT INTO report_skipped_windows (period_start, run_id)
SELECT DISTINCT date_trunc('minute', o.created_at), %(run_id)s::bigint FROM orders o
WHERE {committed}
ON CONFLICT (period_start) DO NOTHING
"""
SKIP_MINUTES_BETWEEN = _SKIP_MINUTES.format(committed=COMMITTED_BETWEEN)
SKIP_MINUTES_BY = _SKIP_MINUTES.format(committed=COMMITTED_BY)

# A range rebuild: every minute of the span with an order or a report now, and the span itself
# (kind 'span'), inside which no stored report row is read: all of them are recomputed.
SCOPE_SPAN_MINUTES = """
INSERT INTO report_scope (kind, period_start, period_end)
SELECT 'minute', minute, minute + interval '1 minute' FROM (
    SELECT date_trunc('minute', o.created_at) AS minute FROM orders o
    WHERE o.created_at >= %(start)s AND o.created_at < %(end)s
    UNION
    SELECT period_start FROM report_sales
    WHERE granularity = 'minute' AND period_start >= %(start)s AND period_start < %(end)s
) minutes
UNION ALL
SELECT 'span', %(start)s, %(end)s
"""

SCOPE_SKIPPED_MINUTES = """
INSERT INTO report_scope (kind, period_start, period_end)
SELECT 'minute', period_start, period_start + interval '1 minute' FROM report_skipped_windows
ON CONFLICT (kind, period_start) DO NOTHING
"""

SCOPE_HOURS_AND_DAYS = """
INSERT INTO report_scope (kind, period_start, period_end)
SELECT DISTINCT 'hour', date_trunc('hour', period_start, %(zone)s),
       date_trunc('hour', period_start, %(zone)s) + interval '1 hour'
FROM report_scope WHERE kind = 'minute'
UNION
SELECT DISTINCT 'day', {day_start}, {next_day_start}
FROM report_scope WHERE kind = 'minute'
""".format(
    day_start=SQL_DAY_START.format(moment="period_start", shift="%(shift)s", zone="%(zone)s"),
    next_day_start=SQL_DAY_START.format(
        moment=SQL_DAY_START.format(moment="period_start", shift="%(shift)s", zone="%(zone)s")
        + " + interval '26 hours'", shift="%(shift)s", zone="%(zone)s"),
)
"""A minute's hour, and its business day (``restaurant_app.business_day``) up to the next one's start."""

SCOPE_CONTEXT = """
INSERT INTO report_scope (kind, period_start, period_end)
SELECT DISTINCT 'context', h.period_start + s.shift * interval '1 hour',
       h.period_end + s.shift * interval '1 hour'
FROM report_scope h CROSS JOIN unnest(%s::integer[]) AS s (shift)
WHERE h.kind = 'hour'
"""

COUNT_SCOPE = "SELECT count(*) FROM report_scope WHERE kind = 'minute'"

# Read by Spark over JDBC; the windows to read are the rows of report_scope.
_ORDER_LINE_COLUMNS = """
SELECT o.order_id::text AS order_id, o.created_at, o.customer_id, o.store_id, o.channel,
       o.payment_method, o.total, i.line_no, i.dish, i.unit_price, i.quantity,
       i.discount AS line_discount, o.discount AS order_discount, o.service_charge,
       o.service_charge_is_revenue, o.delivery_fee, o.tip, o.payments::text AS payments,
       coalesce(e.cancelled, 0) AS cancelled, coalesce(e.refunded, 0) AS refunded
"""

# OFFSET 0 keeps PostgreSQL from flattening the subqueries into a hash join over all order
# items: each scope minute is an index range scan on orders, each order an index scan on its
# items, so the cost follows the orders read, not the size of the tables. Both tables are
# partitioned by the order's day (migration 006), so each scan reads that day's partition only.
SPARK_ORDER_LINES = _ORDER_LINE_COLUMNS + """
FROM report_scope s
CROSS JOIN LATERAL (
    SELECT * FROM orders o
    WHERE o.created_at >= s.period_start AND o.created_at < s.period_end OFFSET 0
) o
CROSS JOIN LATERAL (
    SELECT * FROM order_items i
    WHERE i.order_id = o.order_id AND i.order_created_at = o.created_at OFFSET 0
) i
""" + TAKEN_BACK + """
WHERE s.kind = 'minute'
"""

_OUTSIDE_SPAN = """
AND NOT EXISTS (SELECT 1 FROM report_scope x WHERE x.kind = 'span'
                AND r.period_start >= x.period_start AND r.period_start < x.period_end)
"""

_STORED_SALES = """
SELECT r.period_start, r.store_id, r.orders, r.items_sold, r.gross_revenue, r.identified_revenue,
       {bill_figures}, r.payments_by_method::text AS payments_by_method,
       r.revenue_by_channel::text AS revenue_by_channel,
       r.revenue_by_payment::text AS revenue_by_payment,
       r.revenue_by_store::text AS revenue_by_store
FROM report_scope s
JOIN report_sales r ON r.period_start >= s.period_start AND r.period_start < s.period_end
WHERE s.kind = '{scope}' AND r.granularity = '{granularity}'
""" + _OUTSIDE_SPAN

_STORED_SALES = _STORED_SALES.replace("{bill_figures}", listed(BILL_FIGURES, "r."))
SPARK_STORED_MINUTES = _STORED_SALES.format(scope="context", granularity="minute")
# The dishes of the minutes around: only the trending dishes (an hour against the hour before)
# and the hour's own dishes read them, so the recomputed hours and the hours on either side.
SPARK_STORED_MINUTE_DISHES = f"""
SELECT r.period_start, r.store_id, r.dish, r.quantity, r.revenue
FROM (SELECT DISTINCT h.period_start + s.shift * interval '1 hour' AS period_start,
             h.period_end + s.shift * interval '1 hour' AS period_end
      FROM report_scope h CROSS JOIN unnest(ARRAY{list(DISH_CONTEXT_HOUR_SHIFTS)}) AS s (shift)
      WHERE h.kind = 'hour') s
JOIN report_dishes r ON r.period_start >= s.period_start AND r.period_start < s.period_end
WHERE r.granularity = 'minute'
""" + _OUTSIDE_SPAN

STAGED_OUTSIDE_SCOPE = """
SELECT st.granularity, st.period_start FROM report_staging_sales st
WHERE NOT EXISTS (SELECT 1 FROM report_scope s
                  WHERE s.kind = st.granularity AND s.period_start = st.period_start)
LIMIT 1
"""

DELETE_SCOPED_SALES = """
DELETE FROM report_sales r USING report_scope s
WHERE s.kind = r.granularity AND s.period_start = r.period_start
"""

DELETE_SCOPED_DISHES = """
DELETE FROM report_dishes r USING report_scope s
WHERE s.kind = r.granularity AND s.period_start = r.period_start
"""

# A range rebuild counts the customers of its hours and days again from all their orders, and
# evaluates every window of its span again: insights of windows left without orders go.
DELETE_SCOPED_CUSTOMERS = """
DELETE FROM report_customers r USING report_scope s
WHERE s.kind = r.granularity AND s.period_start = r.period_start
"""
DELETE_SPAN_INSIGHTS = """
DELETE FROM report_insights i USING report_scope s
WHERE s.kind = 'span' AND i.window_start >= s.period_start AND i.window_start < s.period_end
"""

DELETE_EVALUATED_INSIGHTS = """
DELETE FROM report_insights i USING report_staging_evaluations e
WHERE i.kind = e.kind AND i.window_start = e.window_start
"""

DELETE_RECOMPUTED_SKIPS = """
DELETE FROM report_skipped_windows k USING report_scope s
WHERE s.kind = 'minute' AND s.period_start = k.period_start
"""

DELETE_ALL_REPORTS = (
    "DELETE FROM report_sales", "DELETE FROM report_dishes",
    "DELETE FROM report_customers", "DELETE FROM report_period_customers",
    "DELETE FROM report_insights", "DELETE FROM report_skipped_windows",
)

INSERT_CUSTOMERS = """
INSERT INTO report_customers (granularity, period_start, store_id, customer_id)
SELECT DISTINCT granularity, period_start, store_id, customer_id FROM report_staging_customers
ON CONFLICT DO NOTHING
"""

# Weeks (from Monday) and months keep their customers in report_customers and their count in
# report_period_customers (migration 026): the history reads one row per period. Only the chain's
# (store_id ''): a store's week or month is counted from its days' customers when read. A period is
# counted from all its days' customers the first time a run publishes one of its days (or again
# after a range rebuild of it); after that, each customer new to it adds one.
PERIOD_UNITS = ("week", "month")
_PERIOD_OF = "(date_trunc({unit}, {start} - %(shift)s, %(zone)s) + %(shift)s)"
"""The week or month holding the business day that starts at ``start``: from the start of its
first business day (``restaurant_app.business_day``), so that the web finds it by that day."""
_PERIOD_END = _PERIOD_OF.format(
    unit="{unit}", start="{start} + CASE {unit} WHEN 'week' THEN interval '8 days'"
                         " ELSE interval '32 days' END")
_TOUCHED_PERIODS = f"""
WITH touched AS (
    SELECT DISTINCT u.unit AS granularity,
           {_PERIOD_OF.format(unit="u.unit", start="st.period_start")} AS period_start
    FROM report_staging_customers st CROSS JOIN unnest(%(units)s::text[]) AS u (unit)
    WHERE st.granularity = 'day' AND st.store_id = ''
), uncounted AS (
    SELECT t.granularity, t.period_start FROM touched t
    WHERE NOT EXISTS (SELECT 1 FROM report_period_customers p
                      WHERE p.granularity = t.granularity AND p.period_start = t.period_start)
)
"""
INSERT_UNCOUNTED_PERIOD_CUSTOMERS = _TOUCHED_PERIODS + f"""
INSERT INTO report_customers (granularity, period_start, customer_id)
SELECT DISTINCT u.granularity, u.period_start, c.customer_id
FROM uncounted u
JOIN report_customers c ON c.granularity = 'day' AND c.store_id = '' AND c.period_start >= u.period_start
 AND c.period_start < {_PERIOD_END.format(unit="u.granularity", start="u.period_start")}
ON CONFLICT DO NOTHING
"""
COUNT_UNCOUNTED_PERIODS = _TOUCHED_PERIODS + """
INSERT INTO report_period_customers (granularity, period_start, unique_customers)
SELECT u.granularity, u.period_start,
       (SELECT count(*) FROM report_customers c
        WHERE c.granularity = u.granularity AND c.period_start = u.period_start AND c.store_id = '')
FROM uncounted u
"""
ADD_NEW_PERIOD_CUSTOMERS = f"""
WITH added AS (
    INSERT INTO report_customers (granularity, period_start, customer_id)
    SELECT DISTINCT u.unit, {_PERIOD_OF.format(unit="u.unit", start="st.period_start")}, st.customer_id
    FROM report_staging_customers st CROSS JOIN unnest(%(units)s::text[]) AS u (unit)
    WHERE st.granularity = 'day' AND st.store_id = ''
    ON CONFLICT DO NOTHING
    RETURNING granularity, period_start
)
INSERT INTO report_period_customers AS p (granularity, period_start, unique_customers)
SELECT granularity, period_start, count(*) FROM added GROUP BY granularity, period_start
ON CONFLICT (granularity, period_start)
DO UPDATE SET unique_customers = p.unique_customers + excluded.unique_customers
"""
# A range rebuild counts again every week and month its span touches.
_IN_SPAN_PERIODS = f"""
USING report_scope s
WHERE s.kind = 'span' AND r.granularity = ANY(%(units)s::text[])
  AND r.period_start >= {_PERIOD_OF.format(unit="r.granularity", start="s.period_start")}
  AND r.period_start < s.period_end
"""
DELETE_SPAN_PERIOD_CUSTOMERS = "DELETE FROM report_customers r" + _IN_SPAN_PERIODS
DELETE_SPAN_PERIOD_COUNTS = "DELETE FROM report_period_customers r" + _IN_SPAN_PERIODS

# A window that was final and is published with other figures (a late order, cancellation or
# refund) is a correction: corrected_at says when it last changed, and stays until the next one.
CORRECTED_BY = ("orders", "items_sold", "gross_revenue", *BILL_FIGURES)
KEEP_REPLACED_WINDOWS = f"""
CREATE TEMP TABLE replaced_windows ON COMMIT DROP AS
SELECT r.granularity, r.period_start, r.store_id, r.final, r.corrected_at, {listed(CORRECTED_BY, "r.")}
FROM report_sales r JOIN report_scope s ON s.kind = r.granularity AND s.period_start = r.period_start
"""

# Where the staged row has no customer count, it is counted here from report_customers.
PUBLISHED_SALES = {
    "unique_customers": "coalesce(st.unique_customers, c.customers, 0)",
    "avg_spend_per_customer":
        "coalesce(st.avg_spend_per_customer, round(st.identified_revenue / c.customers, 2))",
}

_INSERT_SALES = f"""
WITH st AS ({{sales}}), customers AS (
    SELECT c.granularity, c.period_start, c.store_id, count(*) AS customers
    FROM report_customers c
    JOIN st USING (granularity, period_start, store_id)
    WHERE st.unique_customers IS NULL
    GROUP BY c.granularity, c.period_start, c.store_id
)
INSERT INTO report_sales ({listed(SALES_KEY + SALES_FIGURES + SALES_STAMPS)})
SELECT {", ".join(PUBLISHED_SALES.get(c, "st." + c) for c in SALES_KEY + SALES_FIGURES)},
       now(), st.period_end <= %(closed_by)s,
       CASE WHEN p.final AND ({listed(CORRECTED_BY, "p.")}) IS DISTINCT FROM ({listed(CORRECTED_BY, "st.")})
            THEN now() ELSE p.corrected_at END
FROM st
LEFT JOIN customers c USING (granularity, period_start, store_id)
LEFT JOIN replaced_windows p USING (granularity, period_start, store_id)
"""
INSERT_SALES = _INSERT_SALES.replace("{sales}", "SELECT * FROM report_staging_sales")

# The closed minutes of the scope, computed and published by PostgreSQL as soon as the run
# starts (restaurant_app.minute_figures): a minute's final report does not wait for Spark, whose
# publish replaces these rows with its own, equal figures.
CLOSED_MINUTES = """
SELECT period_start, period_end FROM report_scope WHERE kind = 'minute' AND period_end <= %(closed_by)s
"""
_CLOSED_SCOPE = """
USING report_scope s WHERE s.kind = 'minute' AND s.period_end <= %(closed_by)s
  AND r.granularity = 'minute' AND r.period_start = s.period_start
"""
DELETE_CLOSED_SALES = "DELETE FROM report_sales r" + _CLOSED_SCOPE
DELETE_CLOSED_DISHES = "DELETE FROM report_dishes r" + _CLOSED_SCOPE
INSERT_CLOSED_SALES = _INSERT_SALES.replace("{sales}", MINUTE_SALES.replace("{minutes}", CLOSED_MINUTES))
INSERT_CLOSED_DISHES = f"""
INSERT INTO report_dishes ({listed(DISH_COLUMNS)})
{MINUTE_DISHES.replace("{minutes}", CLOSED_MINUTES)}
"""

# Hours are added up from their minutes and days from their hours, here in PostgreSQL, from the
# report rows just published: the same sums Spark made of them before (docs/reports.md, "How a
# run computes"), without reading them into Spark and back. Each recomputed hour and day of
# report_scope gets a row for every store (and the chain) with rows in it, and its dishes ranked
# as Spark ranks them: by quantity, then by name in byte order (COLLATE "C", as Spark compares
# strings). Unique customers cannot be added up: they are counted from report_customers.
ROLLUP_DISHES = f"""
INSERT INTO report_dishes ({listed(DISH_COLUMNS)})
SELECT s.kind, s.period_start, d.store_id, d.dish, sum(d.quantity), sum(d.revenue),
       row_number() OVER (PARTITION BY s.period_start, d.store_id
                          ORDER BY sum(d.quantity) DESC, d.dish COLLATE "C")
FROM report_scope s
JOIN report_dishes d ON d.granularity = %(finer)s
 AND d.period_start >= s.period_start AND d.period_start < s.period_end
WHERE s.kind = %(unit)s
GROUP BY s.kind, s.period_start, d.store_id, d.dish
"""

_BREAKDOWN_SUMS = ",\n".join(
    f"coalesce(jsonb_object_agg(e.key, e.amount) FILTER (WHERE e.name = '{name}'), '{{}}') AS {name}"
    for name in SALES_BREAKDOWNS)
_ROLLED_SALES = f"""
SELECT t.*, d.dish AS top_dish, d.quantity AS top_dish_quantity, {listed(SALES_BREAKDOWNS, "b.")}
FROM (
    SELECT s.kind AS granularity, s.period_start, r.store_id, s.period_end,
           sum(r.orders) AS orders, sum(r.items_sold) AS items_sold,
           sum(r.gross_revenue) AS gross_revenue,
           round(sum(r.gross_revenue) / sum(r.orders), 2) AS avg_ticket,
           NULL::bigint AS unique_customers, NULL::numeric AS avg_spend_per_customer,
           sum(r.identified_revenue) AS identified_revenue,
           {", ".join(f"sum(r.{name}) AS {name}" for name in BILL_FIGURES)}
    FROM report_scope s
    JOIN report_sales r ON r.granularity = %(finer)s
     AND r.period_start >= s.period_start AND r.period_start < s.period_end
    WHERE s.kind = %(unit)s
    GROUP BY s.kind, s.period_start, s.period_end, r.store_id
) t
JOIN report_dishes d ON d.granularity = t.granularity AND d.period_start = t.period_start
 AND d.store_id = t.store_id AND d.rank = 1
JOIN (
    SELECT e.period_start, e.store_id, {_BREAKDOWN_SUMS}
    FROM (
        SELECT s.period_start, r.store_id, b.name, e.key, sum(e.value::numeric) AS amount
        FROM report_scope s
        JOIN report_sales r ON r.granularity = %(finer)s
         AND r.period_start >= s.period_start AND r.period_start < s.period_end
        CROSS JOIN LATERAL (VALUES {", ".join(f"('{name}', r.{name})" for name in SALES_BREAKDOWNS)})
            AS b (name, figures)
        CROSS JOIN LATERAL jsonb_each_text(b.figures) AS e (key, value)
        WHERE s.kind = %(unit)s
        GROUP BY 1, 2, 3, 4
    ) e
    GROUP BY e.period_start, e.store_id
) b ON b.period_start = t.period_start AND b.store_id = t.store_id
"""
ROLLUP_SALES = _INSERT_SALES.replace("{sales}", _ROLLED_SALES)
ROLLUPS = ({"unit": "hour", "finer": "minute"}, {"unit": "day", "finer": "hour"})
"""Hours from minutes, then days from hours."""

# An hour's best-selling dish, an insight of each recomputed hour, from its ranked dishes.
DELETE_SCOPED_TOP_DISHES = """
DELETE FROM report_insights i USING report_scope s
WHERE s.kind = 'hour' AND i.kind = 'top_dish' AND i.window_start = s.period_start
"""
INSERT_TOP_DISHES = """
INSERT INTO report_insights (store_id, kind, window_start, window_end, subject, figures, computed_at)
SELECT d.store_id, 'top_dish', s.period_start, s.period_end, '',
       jsonb_build_object('dish', d.dish, 'quantity', d.quantity, 'revenue', d.revenue), now()
FROM report_scope s
JOIN report_dishes d ON d.granularity = 'hour' AND d.period_start = s.period_start AND d.rank = 1
WHERE s.kind = 'hour'
"""

INSERT_DISHES = f"""
INSERT INTO report_dishes ({listed(DISH_COLUMNS)})
SELECT {listed(DISH_COLUMNS)} FROM report_staging_dishes
"""

INSERT_INSIGHTS = f"""
INSERT INTO report_insights ({listed(INSIGHT_COLUMNS)}, computed_at)
SELECT {listed(INSIGHT_COLUMNS)}, now()
FROM report_staging_insights
"""

# The windows written: each has a row for the chain, and one for each store with orders in it.
COUNT_WINDOWS = f"""
SELECT count(*) FROM report_sales r
JOIN report_scope s ON s.kind = r.granularity AND s.period_start = r.period_start
WHERE r.store_id = '{CHAIN_STORE}'
"""
# The orders and order lines read: every order read is in one of the chain's staged minutes.
STAGED_COUNTS = f"""
SELECT coalesce(sum(orders), 0)::bigint, coalesce(sum(order_lines), 0)::bigint FROM {STAGING_TABLE}
WHERE staged = 'sales' AND granularity = 'minute' AND store_id = '{CHAIN_STORE}'
"""


class ReportStore:
    """The report job's connection: its lock and run record (the ledger), its scope and the publish step."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        self.conn.execute(SESSION_LIMITS, (f"{round(timeout_seconds * 1000)}ms",
                                           IDLE_IN_TRANSACTION_TIMEOUT, CLIENT_CHECK_INTERVAL))
        self.ledger = RunLedger(self.conn)

    def close(self) -> None:
        self.conn.close()

    def start_run(self, full: bool, span: Span | None = None) -> ReportRun:
        """Record a new run; if it skips orders, record their minute windows in the same transaction."""
        with self.conn.transaction():
            run = self.ledger.start(full, span)
            if run.skip is not None:
                run = replace(run, skipped_windows=self._record_skip(run, run.skip))
        return run

    def _record_skip(self, run: ReportRun, skip: Skip) -> int:
        """List the minute windows of the skipped orders and note the skip on the run; return how many."""
        if skip.since is None:
            cursor = self.conn.execute(SKIP_MINUTES_BY, {"run_id": run.run_id, "until": skip.until.snapshot})
        else:
            cursor = self.conn.execute(SKIP_MINUTES_BETWEEN, {
                "run_id": run.run_id, "since": skip.since.snapshot, "until": skip.until.snapshot})
        self.ledger.note(run, skip_note(skip, cursor.rowcount))
        return cursor.rowcount

    def fill_scope(self, run: ReportRun, zone: str, day_starts_hour: int = 0) -> ReportRun:
        """Fill ``report_scope`` with the windows the run recomputes; return the run with their count."""
        with self.conn.transaction():
            self.conn.execute(f"TRUNCATE report_scope, {STAGING_TABLE}")
            if run.span is not None:
                self.conn.execute(SCOPE_SPAN_MINUTES, {"start": run.span.start, "end": run.span.end})
            elif run.since is None:
                self.conn.execute(SCOPE_ALL_MINUTES)
            else:
                snapshots = {"since": run.since.snapshot, "until": run.until.snapshot}
                self.conn.execute(SCOPE_NEW_MINUTES, snapshots)
                self.conn.execute(SCOPE_NEW_EVENT_MINUTES, snapshots)
            if run.retry_skipped:
                self.conn.execute(SCOPE_SKIPPED_MINUTES)
            self.conn.execute(SCOPE_HOURS_AND_DAYS, {"zone": zone, "shift": shift(day_starts_hour)})
            self.conn.execute(SCOPE_CONTEXT, (CONTEXT_HOUR_SHIFTS,))
            self.conn.execute("ANALYZE report_scope")
            minutes = self.conn.execute(COUNT_SCOPE).fetchone()[0]
        return replace(run, minutes=minutes)

    def close_minutes(self, run: ReportRun, grace_seconds: float) -> int:
        """Publish the scope's closed minutes, computed by PostgreSQL, in one transaction; return
        how many minute rows (each store's and the chain's) it wrote."""
        params = {"closed_by": closed_by(run, grace_seconds), "store": None}
        with self.conn.transaction():
            self.conn.execute(KEEP_REPLACED_WINDOWS)
            self.conn.execute(DELETE_CLOSED_SALES, params)
            self.conn.execute(DELETE_CLOSED_DISHES, params)
            written = self.conn.execute(INSERT_CLOSED_SALES, params).rowcount
            self.conn.execute(INSERT_CLOSED_DISHES, params)
        return written

    def publish(self, run: ReportRun, grace_seconds: float, zone: str,
                day_starts_hour: int) -> tuple[int, int, int]:
        """Replace the recomputed windows with the staged rows in one transaction; return how many
        windows, and how many orders and order lines the run read."""
        with self.conn.transaction():
            # Fresh statistics, so that joins with the large report tables use their indexes.
            self.conn.execute(f"ANALYZE {STAGING_TABLE}")
            outside = self.conn.execute(STAGED_OUTSIDE_SCOPE).fetchone()
            if outside:
                raise RuntimeError(
                    f"Spark computed the {outside[0]} starting {outside[1]}, which PostgreSQL did not"
                    " expect; the time zones of Spark and PostgreSQL disagree."
                )
            self.conn.execute(KEEP_REPLACED_WINDOWS)
            if run.full:
                for statement in DELETE_ALL_REPORTS:
                    self.conn.execute(statement)
            else:
                for statement in (DELETE_SCOPED_SALES, DELETE_SCOPED_DISHES, DELETE_EVALUATED_INSIGHTS,
                                  DELETE_SCOPED_TOP_DISHES, DELETE_RECOMPUTED_SKIPS):
                    self.conn.execute(statement)
                if run.span is not None:
                    self.conn.execute(DELETE_SCOPED_CUSTOMERS)
                    self.conn.execute(DELETE_SPAN_INSIGHTS)
                    for statement in (DELETE_SPAN_PERIOD_CUSTOMERS, DELETE_SPAN_PERIOD_COUNTS):
                        self.conn.execute(statement, period_params(zone, day_starts_hour))
            self.conn.execute(INSERT_CUSTOMERS)
            self._count_period_customers(period_params(zone, day_starts_hour))
            closed = closed_by(run, grace_seconds)
            self.conn.execute(INSERT_SALES, {"closed_by": closed})
            self.conn.execute(INSERT_DISHES)
            for rollup in ROLLUPS:
                self.conn.execute(ROLLUP_DISHES, rollup)
                self.conn.execute(ROLLUP_SALES, {**rollup, "closed_by": closed})
            self.conn.execute(INSERT_INSIGHTS)
            self.conn.execute(INSERT_TOP_DISHES)
            windows = self.conn.execute(COUNT_WINDOWS).fetchone()[0]
            orders_read, rows_read = self.conn.execute(STAGED_COUNTS).fetchone()
            self.ledger.finish(run, windows, orders_read, rows_read)
        return windows, orders_read, rows_read

    def _count_period_customers(self, params: dict[str, object]) -> None:
        """Keep the customers and their count of each week and month the staged days fall in."""
        for statement in (INSERT_UNCOUNTED_PERIOD_CUSTOMERS, COUNT_UNCOUNTED_PERIODS,
                          ADD_NEW_PERIOD_CUSTOMERS):
            self.conn.execute(statement, params)


def closed_by(run: ReportRun, grace_seconds: float) -> datetime:
    """A window is final if it had closed, grace included, when the run took its snapshot."""
    return run.until.taken_at - timedelta(seconds=grace_seconds)


def period_params(zone: str, day_starts_hour: int) -> dict[str, object]:
    """What the week and month statements need: the units, the clock and the business day's start."""
    return {"units": list(PERIOD_UNITS), "zone": zone, "shift": shift(day_starts_hour)}


@contextmanager
def report_store(url: str, timeout_seconds: float) -> Iterator[ReportStore]:
    store = ReportStore(url, timeout_seconds)
    try:
        yield store
    finally:
        store.close()
