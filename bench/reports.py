"""Report cost: the Spark job, incremental and full, as the orders table grows; and plain SQL beside it.

The history is bulk-loaded in SQL (generate_series), not through Kafka: a steady
``HISTORY_RATE`` orders/s going back in time from the start of the test, so a larger
table is a longer history. Before each incremental run, one report interval's worth
of new orders is stored through the product's save path, as the worker would, in a minute
of its own: the minute after the last run's (``NewOrders``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil
import psycopg

from bench.monitor import descendants_cpu, process_tree_cpu
from bench.pipeline import spark_connect_server
from bench.spark_profile import phases_while
from infra.scratch import ScratchStack
from infra.spark_connect import SparkConnectServer
from restaurant_app.database import Database
from restaurant_app.menu import MENU
from restaurant_app.models import CHANNELS, PAYMENT_METHODS
from restaurant_app.order_sink import save_orders
from restaurant_app.partitions import add_partitions
from restaurant_app.progress import Progress
from restaurant_app.report_runner import ReportRunner
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.traffic import OrderGenerator
from spark_reports import job
from spark_reports.result import RunStatus, parse_result

log = logging.getLogger("bench")

HISTORY_RATE = 2.0
"""Orders per second in the bulk-loaded history: 5M orders are about 29 days."""
NEW_ORDERS = 120
"""Orders added before each incremental run: one minute at the history rate."""
LOAD_CHUNK = 500_000
CUSTOMERS = 50_000
SERVER_WARM_UP_RUNS = 80
"""Unmeasured runs on the fresh Spark Connect server before the first measured one: its JIT
compiler and heap take about that many runs to settle, as the server of `make run` does in its
first 80 minutes (at 100,000 orders, a run cost 2.2 CPU-s after 40 runs and 1.6 after 80). The
freshness bench measures a fresh server instead."""
PROFILED_RUNS = 10
"""Runs on the settled server after the measured ones, sampled by Java Flight Recorder."""
FULL_REBUILD_TIMEOUT_SECONDS = 1800
"""A full rebuild's timeout: 5M orders take about 320 s here, past the minute timer's 300 s."""

# Order g (0, 1, 2, ...) was placed g / rate seconds before the end of the history and has
# 1 + g % 6 lines of distinct dishes; its total is the sum of its lines, as validation demands.
# A NULL xid marks the history as stored before the reports began (as migration 004 leaves
# older orders): incremental runs leave it alone, and only a full rebuild reads it.
# Each order's key goes to order_keys, and each line carries its order's created_at (migration 006).
LOAD_ORDERS = """
WITH loaded AS (
INSERT INTO orders (order_id, created_at, customer_id, customer_name, channel,
                    payment_method, total, ingested_at, xid)
SELECT md5('bench-order-' || g)::uuid, t.placed, c.id, 'Cliente ' || c.id,
       (%(channels)s::text[])[1 + g %% cardinality(%(channels)s::text[])],
       (%(payments)s::text[])[1 + g / 7 %% cardinality(%(payments)s::text[])],
       (SELECT sum((%(prices)s::numeric[])[1 + (g + j * 5) %% cardinality(%(prices)s::numeric[])]
                   * (1 + (g + j) %% 3))
        FROM generate_series(1, 1 + g %% 6) AS j),
       t.placed + interval '1 second', NULL
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
CROSS JOIN LATERAL (SELECT %(end)s::timestamptz - g * %(step)s * interval '1 second' AS placed) t
CROSS JOIN LATERAL (SELECT 1 + g * 7919 %% %(customers)s AS id) c
RETURNING order_id, created_at
)
INSERT INTO order_keys (order_id, created_at) SELECT order_id, created_at FROM loaded
"""

LOAD_ITEMS = """
INSERT INTO order_items (order_id, line_no, dish, category, unit_price, quantity, order_created_at)
SELECT md5('bench-order-' || g)::uuid, j, (%(dishes)s::text[])[d], (%(categories)s::text[])[d],
       (%(prices)s::numeric[])[d], 1 + (g + j) %% 3,
       %(end)s::timestamptz - g * %(step)s * interval '1 second'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
CROSS JOIN LATERAL generate_series(1, 1 + g %% 6) AS j
CROSS JOIN LATERAL (SELECT 1 + (g + j * 5) %% cardinality(%(prices)s::numeric[]) AS d) m
"""

# The per-minute figures of report_sales, as one query: from %(since)s on ('-infinity': all).
MINUTE_REPORT = """
WITH orders_in AS (
    SELECT *, date_trunc('minute', created_at) AS minute FROM orders WHERE created_at >= %(since)s
), lines AS (
    SELECT o.minute, i.dish, i.quantity FROM orders_in o JOIN order_items i USING (order_id)
), sales AS (
    SELECT minute, count(*) AS orders, sum(total) AS gross_revenue,
           count(DISTINCT customer_id) AS unique_customers
    FROM orders_in GROUP BY minute
), items AS (
    SELECT minute, sum(quantity) AS items_sold FROM lines GROUP BY minute
), dishes AS (
    SELECT minute, dish, sum(quantity) AS quantity,
           row_number() OVER (PARTITION BY minute ORDER BY sum(quantity) DESC, dish) AS rank
    FROM lines GROUP BY minute, dish
), channels AS (
    SELECT minute, jsonb_object_agg(channel, revenue) AS revenue_by_channel
    FROM (SELECT minute, channel, sum(total) AS revenue FROM orders_in GROUP BY 1, 2) c
    GROUP BY minute
), payments AS (
    SELECT minute, jsonb_object_agg(payment_method, revenue) AS revenue_by_payment
    FROM (SELECT minute, payment_method, sum(total) AS revenue FROM orders_in GROUP BY 1, 2) p
    GROUP BY minute
)
SELECT s.minute, s.orders, i.items_sold, s.gross_revenue,
       round(s.gross_revenue / s.orders, 2) AS avg_ticket, s.unique_customers,
       round(s.gross_revenue / s.unique_customers, 2) AS avg_spend_per_customer,
       d.dish AS top_dish, d.quantity AS top_dish_quantity,
       c.revenue_by_channel, p.revenue_by_payment
FROM sales s
JOIN items i USING (minute)
JOIN dishes d ON d.minute = s.minute AND d.rank = 1
JOIN channels c ON c.minute = s.minute
JOIN payments p ON p.minute = s.minute
"""


def menu_params() -> dict[str, list]:
    return {
        "dishes": [d.name for d in MENU], "categories": [d.category for d in MENU],
        "prices": [d.price for d in MENU], "channels": list(CHANNELS),
        "payments": list(PAYMENT_METHODS),
    }


def history_days(first: int, last: int, end: datetime, rate: float = HISTORY_RATE) -> list[date]:
    """The UTC days of history orders ``first`` to ``last``, ``rate`` a second back from ``end``."""
    oldest = (end - timedelta(seconds=last / rate)).date()
    newest = (end - timedelta(seconds=first / rate)).date()
    return [oldest + timedelta(days=n) for n in range((newest - oldest).days + 1)]


async def add_day_partitions(database_url: str, days: list[date]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await add_partitions(conn, days)


def bulk_load(database_url: str, first: int, last: int, end: datetime, rate: float = HISTORY_RATE) -> None:
    """Add history orders numbered ``first`` to ``last`` (inclusive), ``rate`` a second going back
    from ``end``, in chunks, into their day partitions."""
    asyncio.run(add_day_partitions(database_url, history_days(first, last, end, rate)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Only the bench's own scratch database: losing it in a crash costs nothing.
        conn.execute("SET synchronous_commit = off")
        # The rows are consistent by construction, so the foreign key checks of each order
        # and order line (triggers) are left out while loading.
        conn.execute("ALTER TABLE orders DISABLE TRIGGER ALL")
        conn.execute("ALTER TABLE order_items DISABLE TRIGGER ALL")
        try:
            with Progress("Loading history orders", last - first + 1) as progress:
                for start in range(first, last + 1, LOAD_CHUNK):
                    params = {**menu_params(), "first": start, "last": min(start + LOAD_CHUNK - 1, last),
                              "end": end, "step": 1 / rate, "customers": CUSTOMERS}
                    with conn.transaction():
                        conn.execute(LOAD_ORDERS, params)
                        conn.execute(LOAD_ITEMS, params)
                    progress.update(params["last"] + 1 - first)
        finally:
            conn.execute("ALTER TABLE orders ENABLE TRIGGER ALL")
            conn.execute("ALTER TABLE order_items ENABLE TRIGGER ALL")
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE order_items")


@dataclass
class NewOrders:
    """Each run's new orders: ``NEW_ORDERS`` spread over a minute of their own, the one after the
    last run's, as if a minute passed between runs.

    Placed at the time of storing instead, the orders of the runs made within one minute would
    pile up in that minute, and each run would recompute a minute of thousands of orders.
    """

    database_url: str
    generator: OrderGenerator
    minute: datetime
    """The minute of the last orders stored; the next ones go in the minute after it."""

    def add(self) -> datetime:
        """Store the next minute's orders through the product's save path; return that minute."""
        self.minute += timedelta(minutes=1)
        step = timedelta(seconds=60 / NEW_ORDERS)
        orders = [self.generator.order(self.minute + number * step) for number in range(NEW_ORDERS)]
        asyncio.run(save_orders(self.database_url, orders))
        return self.minute


def run_report_job(env: dict[str, str], full: bool, log_file: Path) -> float:
    """Run ``python -m spark_reports`` once, its output in ``log_file``; return its wall-clock seconds."""
    command = [sys.executable, "-m", "spark_reports", *(["--full"] if full else [])]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_file.open("w") as output:
        result = subprocess.run(command, env={**os.environ, **env}, cwd=PROJECT_ROOT, stdout=output,
                                stderr=subprocess.STDOUT, text=True, check=False)
    seconds = time.monotonic() - started
    outcome = parse_result(log_file.read_text(errors="replace"))
    if result.returncode != 0 or not outcome or outcome.status != RunStatus.SUCCEEDED:
        error = " ".join((outcome.error or "").split())[:300] if outcome else "no result line"
        raise RuntimeError(f"the report job failed ({error}); its output is in {log_file}")
    return seconds


def minute_report_sql(database_url: str, since: datetime | None) -> float:
    """Run the per-minute aggregation as one query, fetching every row; return its seconds."""
    with psycopg.connect(database_url) as conn:
        started = time.monotonic()
        conn.execute(MINUTE_REPORT, {"since": since or "-infinity"}).fetchall()
        return time.monotonic() - started


def reports_at_size(database_url: str, size: int, runs: tuple[int, int], new_orders: NewOrders,
                    logs: Path, failures: list[str], server: SparkConnectServer,
                    warm_up: int = 0, profile: Counter[str] | None = None) -> dict[str, list[float]]:
    """Full rebuilds, then incremental runs each after new orders, and the SQL query beside them;
    then ``warm_up`` unmeasured and as many measured incremental runs on the Spark Connect
    ``server``, launched as the worker launches them, with their CPU (job and server); then, given
    a ``profile``, ``PROFILED_RUNS`` more whose server samples it counts by phase (``bench.spark_profile``).

    A failed full rebuild is added to ``failures`` and the incremental runs go on without it.
    """
    incremental_runs, full_runs = runs
    # Spark's scratch files go under the bench's folder, away from anything that cleans /tmp.
    scratch = logs.parent / "spark"
    scratch.mkdir(parents=True, exist_ok=True)
    env = {"DATABASE_URL": database_url, "SPARK_LOCAL_DIRS": str(scratch)}
    remote, server_process = server.remote, psutil.Process(server.process.pid)
    full_env = {**env, "REPORT_TIMEOUT_SECONDS": str(FULL_REBUILD_TIMEOUT_SECONDS)}
    figures: dict[str, list[float]] = {"incremental_s": [], "warm_incremental_s": [], "warm_cpu_s": [],
                                       "warm_server_cpu_s": [], "full_s": [], "sql_new_s": [],
                                       "sql_all_s": []}
    for number in range(1, full_runs + 1):
        log_file = logs / f"report-{size}-full-{number}.log"
        try:
            figures["full_s"].append(run_report_job(full_env, True, log_file))
        except RuntimeError as exc:
            log.error("Full rebuild at %s orders: %s", f"{size:,}", exc)
            failures.append(f"Full rebuild at {size:,} orders: {exc}")
    for _ in range(max(full_runs, 1)):
        figures["sql_all_s"].append(minute_report_sql(database_url, None))
    for number in range(1, incremental_runs + 1):
        minute = new_orders.add()
        log_file = logs / f"report-{size}-incremental-{number}.log"
        figures["incremental_s"].append(run_report_job(env, False, log_file))
        figures["sql_new_s"].append(minute_report_sql(database_url, minute))
    with closing(WorkerLauncher({**os.environ, **env, "SPARK_REMOTE": remote})) as launch:
        launch.after_new_orders(new_orders, warm_up)
        for _ in range(incremental_runs):
            new_orders.add()
            job_before, server_before = launch.cpu(), process_tree_cpu(server_process)
            figures["warm_incremental_s"].append(launch())
            server_cpu = process_tree_cpu(server_process) - server_before
            figures["warm_server_cpu_s"].append(server_cpu)
            figures["warm_cpu_s"].append(launch.cpu() - job_before + server_cpu)
        if profile is not None:
            jvm = next(p for p in (server_process, *server_process.children(recursive=True))
                       if p.name() == "java")
            profile.update(phases_while(jvm.pid, logs / f"report-{size}-settled.jfr",
                                        lambda: launch.after_new_orders(new_orders, PROFILED_RUNS)))
    return figures


class WorkerLauncher:
    """Runs the report job as the worker's timer does: forked from a fork server that loaded it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = ReportRunner([sys.executable, "-m", "spark_reports"], timeout=300, env=env,
                                   cwd=PROJECT_ROOT, preload=job.MODULES)

    def __call__(self) -> float:
        """One incremental run; return its wall-clock seconds."""
        result = self.loop.run_until_complete(self.runner.run()).result
        if result.status != RunStatus.SUCCEEDED:
            raise RuntimeError(f"the report job {result.status}: {result.error}")
        return result.seconds

    def after_new_orders(self, new_orders: NewOrders, runs: int) -> None:
        """``runs`` incremental runs, each after a minute of new orders, unmeasured."""
        for _ in range(runs):
            new_orders.add()
            self()

    def cpu(self) -> float:
        """CPU seconds of the jobs launched so far, the one running included."""
        server = self.runner.fork_server.process
        return 0.0 if server is None else descendants_cpu(psutil.Process(server.pid))

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.stop())
        self.loop.close()


def history_end() -> datetime:
    """Where the bulk-loaded history stops: a few minutes ago, clear of the new orders."""
    return (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)


def reports_bench(stack: ScratchStack, plan: dict[int, tuple[int, int]], seed: int,
                  results: dict[int, dict[str, list[float]]], failures: list[str],
                  profile: Counter[str]) -> None:
    """Grow one database through the sizes of ``plan``, measuring the report job into ``results``
    and the settled server's samples at the first size into ``profile``.

    ``plan`` maps each size to its (incremental runs, full rebuild runs). Where a size has
    no full rebuild, its first incremental run follows the bulk load of the older history.
    ``results`` keeps the sizes measured before a failure.
    """
    database_url = stack.new_database("reports")
    asyncio.run(Database(database_url).migrate())
    end = history_end()
    this_minute = datetime.now(UTC).replace(second=0, microsecond=0)
    new_orders = NewOrders(database_url, OrderGenerator(seed), this_minute)
    loaded = 0
    with spark_connect_server(stack.home / "spark-connect-reports") as server:
        for size, (incremental_runs, full_runs) in plan.items():
            started = time.monotonic()
            bulk_load(database_url, loaded, size - 1, end)
            loaded = size
            log.info("Loaded %s history orders in %.0f s; running the report job ...",
                     f"{size:,}", time.monotonic() - started)
            first = size == min(plan)
            results[size] = reports_at_size(database_url, size, (incremental_runs, full_runs), new_orders,
                                            stack.home / "logs", failures, server,
                                            warm_up=SERVER_WARM_UP_RUNS if first else 0,
                                            profile=profile if first else None)
            log.info("  %s", {name: [round(v, 1) for v in values] for name, values in results[size].items()})
