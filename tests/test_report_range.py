"""A range rebuild (``python -m spark_reports --from DAY --to DAY``) on real PostgreSQL and Spark.

Three days of orders are reported; then orders are changed behind the reports' back on the middle
day and on the first, and a late order arrives on the last. Rebuilding the middle day makes its
reports equal SQL over the orders, leaves every report outside it untouched, and does not keep
the next incremental run from reporting the late order.
"""

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from infra.scratch import ScratchStack
from restaurant_app.database import Database
from spark_reports.job import day_span
from spark_reports.ledger import Span
from tests.services import execute, query, run_report_job
from tests.test_reports_job import (
    DAYS,
    ZONE,
    actual_insights,
    dish_rows,
    expected,
    history,
    make_order,
    run_job,
    sales_rows,
    same_figures,
    save,
    snapshot,
)

pytestmark = pytest.mark.integration

REBUILT_DAY: date = DAYS[1].astimezone(ZoneInfo(ZONE)).date() + timedelta(days=1)
"""The second lunch in São Paulo (the orders' UTC days start at 21:00 the day before there)."""
SPAN: Span = day_span(REBUILT_DAY, REBUILT_DAY, ZONE)
LATE_ORDER_AT = DAYS[2] + timedelta(hours=14, minutes=7, seconds=3)
"""A new order on the third day, stored after the first run and before the rebuild."""
TABLE_PERIODS = {"report_sales": 1, "report_dishes": 1, "report_customers": 1}
"""Where each report table keeps a row's period start."""
WINDOWS = ("minute", "hour", "day")

DELETE_A_MINUTE = """
WITH gone AS (
    SELECT order_id FROM orders
    WHERE date_trunc('minute', created_at) = (SELECT min(date_trunc('minute', created_at)) FROM orders
                                              WHERE created_at >= %(start)s AND created_at < %(end)s)
)
DELETE FROM order_keys WHERE order_id IN (SELECT order_id FROM gone)
"""
"""Every order of the day's first minute disappears (its lines and key with it), so that minute
must leave the reports."""

CHANGE_ORDERS = """
UPDATE orders SET total = total + 10, payment_method = 'cash', customer_id = customer_id + 100000
WHERE created_at >= %(start)s AND created_at < %(end)s
  AND extract(minute FROM created_at)::int %% 3 = 0
"""
"""Every third minute's orders cost more, are paid in cash and belong to other customers."""

CHANGE_ITEMS = """
UPDATE order_items SET quantity = quantity + 1
WHERE order_id IN (SELECT order_id FROM orders WHERE created_at >= %(start)s AND created_at < %(end)s
                   AND extract(minute FROM created_at)::int %% 5 = 0)
"""


@dataclass
class Rebuild:
    url: str
    before: dict
    rebuilt: dict
    after: dict
    expected_after: dict
    insights_after: dict
    next_run: dict
    after_next: dict
    expected_after_next: dict


def change_behind_the_reports(url: str, span: Span) -> None:
    """Delete orders of ``span``, reprice others and add to their lines in SQL, as a correction by
    hand would."""
    bounds = {"start": span.start, "end": span.end}
    for statement in (DELETE_A_MINUTE, CHANGE_ORDERS, CHANGE_ITEMS):
        execute(url, statement, bounds)


@pytest.fixture(scope="module")
def rebuild(stack: ScratchStack) -> Rebuild:
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    save(url, history())
    assert run_job(url)["status"] == "succeeded"
    save(url, [make_order(LATE_ORDER_AT, 8888, [("Sushi Combo", 3)], channel="delivery")])
    change_behind_the_reports(url, SPAN)
    first_day = day_span(REBUILT_DAY - timedelta(days=1), REBUILT_DAY - timedelta(days=1), ZONE)
    execute(url, CHANGE_ORDERS, {"start": first_day.start, "end": first_day.end})
    before = snapshot(url)
    rebuilt = run_report_job(url, "--from", REBUILT_DAY.isoformat(), "--to", REBUILT_DAY.isoformat(),
                             env={"RESTAURANT_TIMEZONE": ZONE})
    after, expected_after, insights_after = snapshot(url), expected(url), actual_insights(url)
    next_run = run_job(url)
    return Rebuild(url, before, rebuilt, after, expected_after, insights_after, next_run, snapshot(url),
                   expected(url))


def inside(moment: datetime, span: Span) -> bool:
    return span.start <= moment < span.end


def rows_outside(tables: dict, span: Span) -> dict[str, list[tuple]]:
    """The minute, hour and day rows outside ``span`` (its week and month are counted again)."""
    return {table: [row for row in tables[table] if not inside(row[column], span) and row[0] in WINDOWS]
            for table, column in TABLE_PERIODS.items()}


def rows_inside(rows: list[tuple], span: Span) -> list[tuple]:
    return [row for row in rows if inside(row[0], span)]


def test_the_rebuild_is_recorded_as_a_range_run(rebuild: Rebuild):
    assert rebuild.rebuilt["status"] == "succeeded" and rebuild.rebuilt["exit_code"] == 0, rebuild.rebuilt
    mode, status, start, end, since, orders_read = query(
        rebuild.url, "SELECT mode, status, range_start, range_end, since_run, orders_read FROM report_runs"
                     " WHERE run_id = %s", (rebuild.rebuilt["run_id"],))[0]
    assert (mode, status, start, end, since) == ("range", "succeeded", SPAN.start, SPAN.end, None)
    in_span = query(rebuild.url, "SELECT count(*) FROM orders WHERE created_at >= %s AND created_at < %s",
                    (SPAN.start, SPAN.end))[0][0]
    assert orders_read == in_span > 0


@pytest.mark.parametrize("unit", ["minute", "hour", "day"])
def test_the_rebuilt_days_equal_sql_over_the_changed_orders(rebuild: Rebuild, unit: str):
    wanted_sales = rows_inside(rebuild.expected_after["sales"][unit], SPAN)
    assert wanted_sales, f"no {unit} in the rebuilt day"
    assert rows_inside(sales_rows(rebuild.after, unit), SPAN) == wanted_sales
    assert rows_inside(dish_rows(rebuild.after, unit), SPAN) == rows_inside(
        rebuild.expected_after["dishes"][unit], SPAN)
    assert rows_inside(sales_rows(rebuild.before, unit), SPAN) != wanted_sales, "the change changed nothing"


def test_the_rebuilt_day_s_insights_equal_sql(rebuild: Rebuild):
    """Those that compare with the day before are left out: that day was changed and not rebuilt."""
    def in_span(insights: dict) -> dict:
        return {key: figures for key, figures in insights.items()
                if inside(key[1], SPAN) and key[0] != "revenue_vs_same_hour_yesterday"}

    wanted = in_span(rebuild.expected_after["insights"])
    actual = in_span(rebuild.insights_after)
    assert wanted and actual.keys() == wanted.keys()
    assert [key for key in wanted if not same_figures(actual[key], wanted[key])] == []


def test_the_customers_of_the_rebuilt_day_are_counted_again(rebuild: Rebuild):
    customers = query(rebuild.url, "SELECT DISTINCT 'day', %s::timestamptz, customer_id FROM orders"
                                   " WHERE created_at >= %s AND created_at < %s ORDER BY 3",
                      (SPAN.start, SPAN.start, SPAN.end))
    stored = [row[:3] for row in rebuild.after["report_customers"]  # the chain's; store_id last
              if row[0] == "day" and inside(row[1], SPAN)]
    assert stored == customers


def period_customers_from_days(tables: dict) -> list[tuple]:
    """Each week's (from Monday) and month's unique customers, counted from its days' in ``tables``."""
    zone = ZoneInfo(ZONE)
    seen: dict[tuple[str, datetime], set[int]] = {}
    for granularity, day, customer, *_ in tables["report_customers"]:  # the chain's; store_id last
        if granularity == "day":
            local = day.astimezone(zone).date()
            week, month = local - timedelta(days=local.weekday()), local.replace(day=1)
            for unit, first in (("month", month), ("week", week)):
                start = datetime(first.year, first.month, first.day, tzinfo=zone)
                seen.setdefault((unit, start), set()).add(customer)
    return sorted((unit, start, len(customers)) for (unit, start), customers in seen.items())


def test_the_week_and_month_of_the_rebuilt_day_are_counted_again(rebuild: Rebuild):
    """From their days' customers: the day before was changed behind the reports and not rebuilt."""
    assert rebuild.after["report_period_customers"] == period_customers_from_days(rebuild.after)
    assert rebuild.after["report_period_customers"] != rebuild.before["report_period_customers"], \
        "the change changed no customer"
    assert rebuild.after_next["report_period_customers"] == period_customers_from_days(rebuild.after_next)


def test_reports_outside_the_range_are_untouched(rebuild: Rebuild):
    outside = rows_outside(rebuild.after, SPAN)
    assert outside == rows_outside(rebuild.before, SPAN)
    assert all(outside.values())
    first_day = [row for row in sales_rows(rebuild.after, "day") if row[0] < SPAN.start]
    assert first_day and first_day != [row for row in rebuild.expected_after["sales"]["day"]
                                       if row[0] < SPAN.start], "the first day was rebuilt too"


def test_the_next_incremental_run_still_reports_the_order_stored_before_the_rebuild(rebuild: Rebuild):
    """The range run read only its days: the next run starts from the run before it."""
    assert rebuild.next_run["status"] == "succeeded", rebuild.next_run
    assert rebuild.next_run["orders_read"] >= 1
    minute = LATE_ORDER_AT.replace(second=0)
    reported = [row for row in sales_rows(rebuild.after_next, "minute") if row[0] == minute]
    assert reported == [row for row in rebuild.expected_after_next["sales"]["minute"] if row[0] == minute]
    assert reported and [row for row in sales_rows(rebuild.after, "minute") if row[0] == minute] != reported
