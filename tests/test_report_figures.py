"""Every report figure of whole bills, cancellations and refunds (docs/reports.md, "Report figures"):
Spark's reports equal an independent SQL computation over the stored orders and events, for
every minute, hour and business day, of each store and of the chain, with version 1 and 2 orders
mixed, orders straddling the business day's start, and a late cancellation that corrects windows
already final."""

import asyncio
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from restaurant_app.database import Database
from restaurant_app.minute_figures import MINUTE_DISHES, MINUTE_SALES
from restaurant_app.models import Order, OrderEvent
from restaurant_app.order_sink import Accepted, AcceptedEvent, PostgresOrderSink, Source
from restaurant_app.report_tables import BILL_FIGURES, DISH_COLUMNS, SALES_FIGURES, SALES_KEY, listed
from restaurant_app.settings import Settings
from restaurant_app.traffic import OrderGenerator
from spark_reports import job
from tests.services import query

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("America/Sao_Paulo")
DAY_STARTS = 4
STORES = ("loja-centro", "loja-praia")
FIRST = datetime(2026, 11, 24, 2, 30, tzinfo=ZONE)  # 90 minutes before the business day's start
"""The first order; one every 45 s for three hours, so that the night straddles 04:00."""

# Written from the definitions in docs/reports.md, not from the job's code.
EXPECTED_FIGURES = """
WITH lines AS (
    SELECT order_id, order_created_at, sum(unit_price * quantity) AS gross, sum(discount) AS line_discounts,
           sum(quantity) AS items
    FROM order_items GROUP BY order_id, order_created_at
), taken AS (
    SELECT order_id, sum(revenue) FILTER (WHERE kind = 'cancellation') AS cancelled,
           sum(revenue) FILTER (WHERE kind = 'refund') AS refunded
    FROM order_events GROUP BY order_id
), bills AS (
    SELECT o.created_at, s.store, o.total, o.discount, o.service_charge, o.delivery_fee, o.tip,
           CASE WHEN o.service_charge_is_revenue THEN o.service_charge ELSE 0 END AS service_revenue,
           l.gross, l.line_discounts, l.items,
           coalesce(t.cancelled, 0) AS cancelled, coalesce(t.refunded, 0) AS refunded
    FROM orders o
    CROSS JOIN LATERAL (VALUES (o.store_id), ('')) AS s (store)  -- its store's and the chain's ('')
    JOIN lines l ON l.order_id = o.order_id AND l.order_created_at = o.created_at
    LEFT JOIN taken t ON t.order_id = o.order_id
), windows AS (
    SELECT 'minute' AS granularity, date_trunc('minute', created_at) AS period_start, b.* FROM bills b
    UNION ALL
    SELECT 'hour', date_trunc('hour', created_at, %(zone)s), b.* FROM bills b
    UNION ALL
    SELECT 'day', date_trunc('day', created_at - %(shift)s, %(zone)s) + %(shift)s, b.* FROM bills b
)
SELECT granularity, period_start, store, count(*) AS orders, sum(items) AS items_sold,
       sum(total) AS gross_revenue,
       round(sum(total) / count(*), 2) AS avg_ticket,
       sum(gross) AS gross_sales, sum(line_discounts + discount) AS discounts,
       sum(gross - line_discounts - discount) AS net_sales, sum(service_charge) AS service_charge,
       sum(service_revenue) AS service_charge_revenue, sum(delivery_fee) AS delivery_fees, sum(tip) AS tips,
       sum(cancelled) AS cancellations, sum(refunded) AS refunds,
       sum(gross - line_discounts - discount + service_revenue + delivery_fee - cancelled - refunded)
           AS net_revenue
FROM windows GROUP BY granularity, period_start, store ORDER BY granularity, period_start, store
"""
FIGURE_NAMES = ("orders", "items_sold", "gross_revenue", "avg_ticket", *BILL_FIGURES)
REPORTED_FIGURES = f"""
SELECT granularity, period_start, store_id, {", ".join(FIGURE_NAMES)}
FROM report_sales ORDER BY granularity, period_start, store_id
"""

EXPECTED_PAYMENTS = """
WITH paid AS (
    SELECT o.created_at, o.store_id, p ->> 'method' AS method, (p ->> 'amount')::numeric AS amount
    FROM orders o CROSS JOIN jsonb_array_elements(o.payments) p
    UNION ALL
    SELECT created_at, store_id, payment_method, total FROM orders WHERE payments IS NULL
), stores AS (
    SELECT created_at, store, method, amount FROM paid CROSS JOIN LATERAL (VALUES (store_id), ('')) s (store)
), windows AS (
    SELECT 'minute' AS granularity, date_trunc('minute', created_at) AS period_start, store, method, amount
    FROM stores
    UNION ALL
    SELECT 'hour', date_trunc('hour', created_at, %(zone)s), store, method, amount FROM stores
    UNION ALL
    SELECT 'day', date_trunc('day', created_at - %(shift)s, %(zone)s) + %(shift)s, store, method, amount
    FROM stores
)
SELECT granularity, period_start, store, method, sum(amount) FROM windows
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
REPORTED_PAYMENTS = """
SELECT r.granularity, r.period_start, r.store_id, p.key, p.value::text::numeric
FROM report_sales r CROSS JOIN jsonb_each(r.payments_by_method) p ORDER BY 1, 2, 3, 4
"""
CORRECTED = """
SELECT granularity, period_start, store_id FROM report_sales WHERE corrected_at IS NOT NULL ORDER BY 1, 2, 3
"""


def night() -> tuple[list[Order], list[OrderEvent]]:
    """Whole bills and plain version 1 orders, one every 45 s, and the bills' cancellations and refunds."""
    bills, plain = OrderGenerator(seed=21, whole_bills=True), OrderGenerator(seed=22)
    orders = [(bills if n % 3 else plain).order((FIRST + timedelta(seconds=45 * n)).astimezone(UTC),
                                                STORES[n % len(STORES)])
              for n in range(240)]
    events = bills.events_for(orders)
    # The generator's ~3% are too few to be sure of both kinds: every 25th order is refunded a line too.
    events += [OrderEvent(kind="refund", event_id=f"00000000-0000-4000-8000-{n:012d}", order_id=o.order_id,
                          created_at=o.created_at + timedelta(minutes=2), reason="item errado",
                          amount=min(o.items[0].net, o.total) or o.total, lines=(1,))
               for n, o in enumerate(orders[::25], start=1) if o.order_id not in {e.order_id for e in events}]
    return orders, events


async def store(url: str, orders: list[Order], events: list[OrderEvent]) -> None:
    """Through the worker's own save path: the orders, then their events, judged on their orders."""
    database = Database(url, max_size=1)
    sink = PostgresOrderSink(database)
    await sink.ready()
    try:
        await sink.save([Accepted(o, Source("t", 0, n, b"")) for n, o in enumerate(orders)])
        accepted = [AcceptedEvent(e, Source("t", 1, n, b"")) for n, e in enumerate(events)]
        saved = await sink.save_events(accepted)
        assert saved.rejections == [] and saved.new_events == len(events)
    finally:
        await database.close()


def run_job(url: str) -> dict:
    settings = replace(Settings.from_env(), database_url=url, spark_driver_memory="512m",
                       restaurant_timezone=str(ZONE), business_day_starts_hour=DAY_STARTS)
    return asdict(job.run(settings))


def assert_reports_equal_sql(url: str) -> None:
    params = {"zone": str(ZONE), "shift": timedelta(hours=DAY_STARTS)}
    expected, reported = query(url, EXPECTED_FIGURES, params), query(url, REPORTED_FIGURES)
    assert [row[:3] for row in reported] == [row[:3] for row in expected]
    for want, got in zip(expected, reported, strict=True):
        figures = dict(zip(FIGURE_NAMES, got[3:], strict=True))
        assert dict(zip(FIGURE_NAMES, want[3:], strict=True)) == figures, want[:3]
    assert query(url, REPORTED_PAYMENTS) == query(url, EXPECTED_PAYMENTS, params)


EVERY_MINUTE = """
SELECT DISTINCT date_trunc('minute', created_at) AS period_start,
       date_trunc('minute', created_at) + interval '1 minute' AS period_end FROM orders
"""
MINUTE_COLUMNS = (*SALES_KEY, *SALES_FIGURES)


def assert_postgres_minutes_equal_spark(url: str) -> None:
    """The minutes PostgreSQL publishes before Spark (restaurant_app.minute_figures) are Spark's, column
    for column: each store's and the chain's figures, breakdowns and ranked dishes."""
    every = {"store": None}
    computed = query(url, f"SELECT {listed(MINUTE_COLUMNS)} FROM ("
                          f"{MINUTE_SALES.replace('{minutes}', EVERY_MINUTE)}) m ORDER BY 2, 3", every)
    reported = query(url, f"SELECT {listed(MINUTE_COLUMNS)} FROM report_sales"
                          " WHERE granularity = 'minute' ORDER BY 2, 3")
    assert len(computed) == len(reported) > 0
    for want, got in zip(reported, computed, strict=True):
        assert dict(zip(MINUTE_COLUMNS, want, strict=True)) == dict(zip(MINUTE_COLUMNS, got, strict=True))
    dishes = f"SELECT {listed(DISH_COLUMNS)} FROM ({{}}) d ORDER BY 2, 3, 4"
    assert query(url, dishes.format(MINUTE_DISHES.replace("{minutes}", EVERY_MINUTE)), every) == query(
        url, dishes.format("SELECT * FROM report_dishes WHERE granularity = 'minute'"))


def test_every_figure_of_every_window_equals_an_independent_sql_computation(database_url: str):
    orders, events = night()
    asyncio.run(store(database_url, orders, events))
    assert run_job(database_url)["status"] == "succeeded"
    assert_reports_equal_sql(database_url)
    assert_postgres_minutes_equal_spark(database_url)
    days = query(database_url, "SELECT period_start FROM report_sales WHERE granularity = 'day'"
                               " AND store_id = '' ORDER BY 1")
    assert [row[0] for row in days] == [datetime(2026, 11, d, DAY_STARTS, tzinfo=ZONE) for d in (23, 24)]
    totals = query(database_url, "SELECT sum(cancellations), sum(refunds), sum(discounts),"
                                 " sum(service_charge), sum(delivery_fees), sum(tips)"
                                 " FROM report_sales WHERE granularity = 'day' AND store_id = ''")[0]
    assert all(total > 0 for total in totals), totals  # the night has every kind of figure
    assert query(database_url, CORRECTED) == []

    # A late cancellation of an order in windows that are final corrects them, and only them.
    late = next(o for o in orders if o.order_id not in {e.order_id for e in events}
                and o.created_at >= FIRST + timedelta(hours=2))
    cancellation = OrderEvent(kind="cancellation", event_id="00000000-0000-4000-8000-999999999999",
                              order_id=late.order_id, created_at=datetime.now(UTC), reason="estorno tardio")
    asyncio.run(store(database_url, [], [cancellation]))
    assert run_job(database_url)["status"] == "succeeded"
    assert_reports_equal_sql(database_url)
    assert_postgres_minutes_equal_spark(database_url)
    local = late.created_at.astimezone(ZONE)
    windows = [("day", datetime(local.year, local.month, local.day, DAY_STARTS, tzinfo=ZONE)),
               ("hour", local.replace(minute=0, second=0, microsecond=0)),
               ("minute", local.replace(second=0, microsecond=0))]
    assert query(database_url, CORRECTED) == [(*window, store) for window in windows
                                              for store in sorted(["", late.store_id])]
    cancelled = query(database_url, "SELECT cancellations FROM report_sales WHERE granularity = 'minute'"
                                    " AND period_start = %s AND store_id = ''",
                      (local.replace(second=0, microsecond=0),))
    assert cancelled[0][0] >= late.total - late.service_charge > Decimal(0)
