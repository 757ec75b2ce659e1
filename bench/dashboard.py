"""The dashboard's reads with history: a year of a 50-store chain's reports, timed through a real worker.

The chain's reports (``store_id`` '') are filled at 50 stores' volume in SQL in bulk: a minute
row for every minute the stores are open, the hours and days added up from them, each window's
dishes and the days' and hours' customers. Each store gets its share of the chain's hours and
days, its days' dishes and customers and the insights, so that a store's reads
(``?store=loja-07``) go through every store's rows as they would in a chain (its minutes are
left out: the dashboard reads only today's). The last two days of orders at the same volume
(``bench.reports.bulk_load``) give "today so far" and yesterday their orders.
"""

from __future__ import annotations

import http.client
import logging
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import psycopg

from bench.latency import percentile
from bench.pipeline import pipeline_env
from bench.reports import bulk_load
from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.menu import MENU
from restaurant_app.settings import Settings

log = logging.getLogger("bench")

STORES = 50
ORDERS_PER_STORE_DAY = 400
OPENS, CLOSES = 11, 23
"""The stores' hours on the restaurant's clock: a minute report for each minute in between."""
CUSTOMER_POOL = 2_000_000
CUSTOMER_STEP = 104_729
"""A prime: ``(offset + k * CUSTOMER_STEP) % CUSTOMER_POOL`` gives distinct customers for k below the pool."""
TARGET_P95_MS = 100.0
WARM_UP_REQUESTS = 10
READY_SECONDS = 300

FILL_MINUTES = """
INSERT INTO report_sales (granularity, period_start, period_end, orders, items_sold, gross_revenue,
    avg_ticket, unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
    revenue_by_channel, revenue_by_payment, identified_revenue, revenue_by_store, computed_at, final,
    gross_sales, net_sales, net_revenue, payments_by_method)
SELECT 'minute', m, m + interval '1 minute', o, items, revenue, round(revenue / o, 2), o,
       round(revenue / o, 2), %(top)s, greatest(o / 4, 1), {channels}, {payments}, revenue,
       jsonb_build_object('main', revenue), m + interval '65 seconds', true, revenue, revenue, revenue,
       {payments}
FROM (
    SELECT m, o, o * 2 + (random() * o)::int AS items, round(o * (70 + random() * 50)::numeric, 2) AS revenue
    FROM (
        SELECT ((d + make_interval(hours => %(opens)s, mins => i)) AT TIME ZONE %(zone)s) AS m,
               greatest(1, (%(per_minute)s * (0.5 + random()))::int) AS o
        FROM generate_series(%(first)s::timestamp, %(last)s::timestamp, interval '1 day') d,
             generate_series(0, %(open_minutes)s - 1) i
    ) minutes
) sales
"""

ROLL_UP = """
INSERT INTO report_sales (granularity, period_start, period_end, orders, items_sold, gross_revenue,
    avg_ticket, unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
    revenue_by_channel, revenue_by_payment, identified_revenue, revenue_by_store, computed_at, final,
    gross_sales, net_sales, net_revenue, payments_by_method)
SELECT %(unit)s, p, {end}, o, items, revenue, round(revenue / o, 2), round(o * 0.8),
       round(revenue / (o * 0.8), 2), %(top)s, o / 4, {channels}, {payments}, revenue,
       jsonb_build_object('main', revenue), {end} + interval '65 seconds', true, revenue, revenue, revenue,
       {payments}
FROM (
    SELECT date_trunc(%(unit)s, period_start, %(zone)s) AS p, sum(orders) AS o, sum(items_sold) AS items,
           sum(gross_revenue) AS revenue
    FROM report_sales WHERE granularity = 'minute' GROUP BY 1
) sales
"""

FILL_MINUTE_DISHES = """
INSERT INTO report_dishes (granularity, period_start, dish, quantity, revenue, rank)
SELECT 'minute', s.period_start, d.dish, greatest(1, s.orders * d.share)::bigint + d.rank_gap,
       (greatest(1, s.orders * d.share)::bigint + d.rank_gap) * d.price, d.rank
FROM report_sales s
CROSS JOIN unnest(%(dishes)s::text[], %(shares)s::numeric[], %(prices)s::numeric[], %(gaps)s::int[],
                  %(ranks)s::int[]) AS d (dish, share, price, rank_gap, rank)
WHERE s.granularity = 'minute'
"""
"""Every dish sold every minute, in a fixed order (``rank_gap`` keeps the ranks strict)."""

ROLL_UP_DISHES = """
INSERT INTO report_dishes (granularity, period_start, dish, quantity, revenue, rank)
SELECT %(unit)s, p, dish, quantity, revenue, row_number() OVER (PARTITION BY p ORDER BY quantity DESC, dish)
FROM (
    SELECT date_trunc(%(unit)s, period_start, %(zone)s) AS p, dish, sum(quantity) AS quantity,
           sum(revenue) AS revenue
    FROM report_dishes WHERE granularity = 'minute' GROUP BY 1, 2
) dishes
"""

FILL_CUSTOMERS = """
INSERT INTO report_customers (granularity, period_start, customer_id)
SELECT s.granularity, s.period_start,
       (n * 7919 + k * %(step)s::bigint) %% %(pool)s
FROM (SELECT granularity, period_start, unique_customers, row_number() OVER () AS n
      FROM report_sales WHERE granularity = %(unit)s) s
CROSS JOIN LATERAL generate_series(1, s.unique_customers) k
"""

FILL_PERIOD_CUSTOMERS = """
INSERT INTO report_period_customers (granularity, period_start, unique_customers)
SELECT u.unit, date_trunc(u.unit, period_start, %(zone)s), count(DISTINCT customer_id)
FROM report_customers CROSS JOIN unnest(ARRAY['week', 'month']) AS u (unit)
WHERE granularity = 'day'
GROUP BY 1, 2
"""
"""The weeks' and months' counts as the report job keeps them (the customers of each week and
month that it also keeps, to count newcomers, are left out: the dashboard does not read them)."""

FILL_INSIGHTS = """
INSERT INTO report_insights (kind, window_start, window_end, subject, figures, computed_at)
SELECT 'top_dish', h.period_start, h.period_end, '',
       jsonb_build_object('dish', d.dish, 'quantity', d.quantity, 'revenue', d.revenue), h.computed_at
FROM report_sales h JOIN report_dishes d
  ON d.granularity = 'hour' AND d.period_start = h.period_start AND d.rank = 1
WHERE h.granularity = 'hour'
UNION ALL
SELECT 'revenue_vs_previous_hour', h.period_start, h.period_end, '',
       jsonb_build_object('revenue', h.gross_revenue, 'previous_revenue', p.gross_revenue,
                          'change_pct', round((h.gross_revenue - p.gross_revenue) * 100 / p.gross_revenue, 1),
                          'minutes', 60), h.computed_at
FROM report_sales h JOIN report_sales p
  ON p.granularity = 'hour' AND p.period_start = h.period_start - interval '1 hour'
WHERE h.granularity = 'hour'
"""

STORE_SALES = """
INSERT INTO report_sales (granularity, period_start, period_end, orders, items_sold, gross_revenue,
    avg_ticket, unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
    revenue_by_channel, revenue_by_payment, identified_revenue, revenue_by_store, computed_at, final,
    gross_sales, net_sales, net_revenue, payments_by_method, store_id)
SELECT granularity, period_start, period_end, o, items, revenue, round(revenue / o, 2), o * 4 / 5 + 1,
       round(revenue / (o * 4 / 5 + 1), 2), top_dish, top_dish_quantity / %(stores)s + 1, {channels},
       {payments}, revenue, jsonb_build_object(store, revenue), computed_at, final, revenue, revenue,
       revenue, {payments}, store
FROM (
    SELECT s.*, s.orders / %(stores)s + 1 AS o, s.items_sold / %(stores)s + 1 AS items,
           round(s.gross_revenue / %(stores)s, 2) AS revenue, st.store
    FROM report_sales s CROSS JOIN unnest(%(store_ids)s::text[]) AS st (store)
    WHERE s.store_id = '' AND s.granularity IN ('hour', 'day')
) sales
"""
"""Each store's share of the chain's hours and days."""

STORE_DISHES = """
INSERT INTO report_dishes (granularity, period_start, store_id, dish, quantity, revenue, rank)
SELECT d.granularity, d.period_start, st.store, d.dish, d.quantity / %(stores)s + 1,
       round(d.revenue / %(stores)s, 2), d.rank
FROM report_dishes d CROSS JOIN unnest(%(store_ids)s::text[]) AS st (store)
WHERE d.store_id = '' AND d.granularity = 'day'
"""

STORE_CUSTOMERS = """
INSERT INTO report_customers (granularity, period_start, store_id, customer_id)
SELECT granularity, period_start, (%(store_ids)s::text[])[(customer_id %% %(stores)s)::int + 1], customer_id
FROM report_customers WHERE store_id = '' AND granularity = 'day'
"""
"""The chain's customers of each day shared among the stores: a store's weeks and months are
counted from them when read."""

STORE_INSIGHTS = """
INSERT INTO report_insights (kind, window_start, window_end, subject, figures, computed_at, store_id)
SELECT kind, window_start, window_end, subject, figures, computed_at, st.store
FROM report_insights CROSS JOIN unnest(%(store_ids)s::text[]) AS st (store)
WHERE store_id = ''
"""

KNOW_STORES = "INSERT INTO stores (store_id) SELECT unnest(%(store_ids)s::text[])"

REPORT_TABLES = ("report_sales", "report_dishes", "report_customers", "report_period_customers",
                 "report_insights")

CHANNELS = {"dine_in": 0.45, "delivery": 0.35}
PAYMENTS = {"pix": 0.4, "credit_card": 0.3, "debit_card": 0.15, "cash": 0.05}
LAST_CHANNEL, LAST_PAYMENT = "takeaway", "meal_voucher"

ENDPOINTS = ("/api/dashboard/summary", "/api/dashboard/minutes", "/api/dashboard/dishes",
             "/api/dashboard/insights", "/api/dashboard/health", "/api/dashboard/rejections")
HISTORY = ("/api/dashboard/history?period=day", "/api/dashboard/history?period=week",
           "/api/dashboard/history?period=month", "/api/dashboard/history.csv?period=month")
STORE_IDS = [f"loja-{n:02}" for n in range(1, STORES + 1)]
STORE = STORE_IDS[6]
"""The store whose reads are timed besides the chain's."""
STORE_ENDPOINTS = tuple(f"{path}?store={STORE}" for path in ENDPOINTS[:4])
STORE_HISTORY = tuple(f"{path}&store={STORE}" for path in HISTORY)


def split(shares: dict[str, float], rest: str) -> str:
    """A jsonb breakdown of ``revenue`` by ``shares``, the rounding left to ``rest``."""
    parts = ", ".join(f"'{key}', round(revenue * {share}, 2)" for key, share in shares.items())
    taken = " - ".join(f"round(revenue * {share}, 2)" for share in shares.values())
    return f"jsonb_build_object({parts}, '{rest}', revenue - {taken})"


def dish_params() -> dict[str, list]:
    """Each dish's share of a minute's orders by popularity, its price and its fixed rank."""
    dishes = sorted(MENU, key=lambda dish: (-dish.popularity, dish.name))
    total = sum(dish.popularity for dish in dishes)
    return {"dishes": [d.name for d in dishes], "shares": [d.popularity * 2 / total for d in dishes],
            "prices": [d.price for d in dishes], "gaps": [len(dishes) - i for i in range(len(dishes))],
            "ranks": list(range(1, len(dishes) + 1)), "top": dishes[0].name}


def fill_reports(database_url: str, days: int, zone: str) -> dict[str, int]:
    """A year (``days``) of the chain's and its stores' reports up to yesterday; return the rows of
    each table."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days)
    open_minutes = (CLOSES - OPENS) * 60
    params = {**dish_params(), "zone": zone, "opens": OPENS, "open_minutes": open_minutes,
              "first": first, "last": today - timedelta(days=1), "step": CUSTOMER_STEP,
              "pool": CUSTOMER_POOL, "per_minute": STORES * ORDERS_PER_STORE_DAY / open_minutes,
              "stores": STORES, "store_ids": STORE_IDS}
    breakdowns = {"channels": split(CHANNELS, LAST_CHANNEL), "payments": split(PAYMENTS, LAST_PAYMENT)}
    ends = {"hour": "p + interval '1 hour'",
            "day": "date_trunc('day', p + interval '26 hours', %(zone)s)"}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SELECT setseed(0.42)")
        steps = [("minute sales", FILL_MINUTES.format(**breakdowns), {})]
        steps += [(f"{unit} sales", ROLL_UP.format(end=ends[unit], **breakdowns), {"unit": unit})
                  for unit in ("hour", "day")]
        steps += [("minute dishes", FILL_MINUTE_DISHES, {})]
        steps += [(f"{unit} dishes", ROLL_UP_DISHES, {"unit": unit}) for unit in ("hour", "day")]
        steps += [(f"{unit} customers", FILL_CUSTOMERS, {"unit": unit}) for unit in ("hour", "day")]
        steps += [("week and month customer counts", FILL_PERIOD_CUSTOMERS, {})]
        steps += [("insights", FILL_INSIGHTS, {})]
        steps += [("stores' hours and days", STORE_SALES.format(**breakdowns), {}),
                  ("stores' day dishes", STORE_DISHES, {}), ("stores' day customers", STORE_CUSTOMERS, {}),
                  ("stores' insights", STORE_INSIGHTS, {}), ("stores", KNOW_STORES, {})]
        for what, sql, extra in steps:
            started = time.monotonic()
            rows = conn.execute(sql, {**params, **extra}).rowcount
            log.info("  %s: %s rows in %.0f s", what, f"{rows:,}", time.monotonic() - started)
        for table in REPORT_TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in REPORT_TABLES}


def wait_until_answering(base_url: str, path: str, timeout: float) -> None:
    """Wait until ``path`` answers 200: the worker is up and has applied the migrations."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            timed_gets(base_url, [path])
            return
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def timed_gets(base_url: str, paths: list[str]) -> list[float]:
    """GET each path in turn on one kept-alive connection; each answer's milliseconds."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    times = []
    try:
        for path in paths:
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
            times.append(elapsed)
    finally:
        connection.close()
    return times


def history_paths(path: str, days: int, requests: int) -> list[str]:
    """``requests`` days spread over the year, so that each request reads another period."""
    today = datetime.now(UTC).date()
    picked: list[date] = [today - timedelta(days=1 + (n * 37) % (days - 1)) for n in range(requests)]
    return [f"{path}&date={day.isoformat()}" for day in picked]


def measure_endpoints(base_url: str, days: int, requests: int) -> dict[str, dict[str, float]]:
    """p50, p95 and max of each endpoint over ``requests`` answers, after a few unmeasured ones."""
    figures = {}
    for path in (*ENDPOINTS, *HISTORY, *STORE_ENDPOINTS, *STORE_HISTORY):
        paths = history_paths(path, days, requests) if "/history" in path else [path] * requests
        timed_gets(base_url, paths[:WARM_UP_REQUESTS])
        times = timed_gets(base_url, paths)
        figures[path] = {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95),
                         "max_ms": max(times), "requests": len(times)}
        log.info("  %s: p50 %.1f ms, p95 %.1f ms", path, figures[path]["p50_ms"], figures[path]["p95_ms"])
    return figures


def dashboard_bench(stack: ScratchStack, days: int, requests: int) -> tuple[dict[str, int], dict]:
    """Fill a database with ``days`` of reports and a day of orders, then time the endpoints."""
    zone = Settings.from_env().restaurant_timezone
    database_url = stack.new_database("dashboard")
    topic = f"bench-dashboard-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(stack, database_url, topic, "dashboard")
    worker = WorkerProcess(env, stack.home / "logs" / "dashboard-worker.log", log_level="warn",
                           web_port=int(env["WEB_PORT"]))
    try:
        worker.start(ready_timeout=None)
        wait_until_answering(worker.url, ENDPOINTS[0], READY_SECONDS)
        orders = 2 * STORES * ORDERS_PER_STORE_DAY
        log.info("  loading two days of orders (%s) ...", f"{orders:,}")
        bulk_load(database_url, 1, orders, datetime.now(UTC), rate=orders / (2 * 86_400))
        log.info("  filling %d days of reports at %d stores' volume ...", days, STORES)
        rows = fill_reports(database_url, days, zone)
        return rows, measure_endpoints(worker.url, days, requests)
    finally:
        worker.stop()
