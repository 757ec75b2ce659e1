"""The real report job, on local Spark, against the real PostgreSQL.

One module-wide timeline of runs is shared by the tests, since every Spark start costs seconds:
history -> first run -> late orders and a run that fails while publishing -> a run that recovers
-> a run while an order's transaction is still open -> a run after it commits -> a full rebuild.
Every figure is checked against plain SQL over the orders.
The timeline runs the job in this process, so its runs share one warm JVM; the command line
(``python -m spark_reports``) is run for the quick cases here and by the worker in test_reports_web.
"""

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from infra.scratch import ScratchStack
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.menu import MENU
from restaurant_app.models import DEFAULT_STORE, Order, OrderItem
from restaurant_app.order_sink import ITEM_COLUMNS, ORDER_COLUMNS, save_orders
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.settings import Settings
from restaurant_app.traffic import OrderGenerator
from restaurant_app.web.language import insight_message
from spark_reports import job
from spark_reports.insights import (
    ANOMALY_MIN_ACTIVE_MINUTES,
    ANOMALY_Z_SCORE,
    TREND_MIN_CHANGE,
    TREND_MIN_RATIO,
)
from spark_reports.ledger import FAILURES_BEFORE_SKIPPING, REPORT_LOCK_ID
from tests.services import item_rows, order_rows, query, run_report_job

pytestmark = pytest.mark.integration

ORDER_NAMES = ", ".join(name for name, _ in ORDER_COLUMNS)
ITEM_NAMES = ", ".join(name for name, _ in ITEM_COLUMNS)

ZONE = "America/Sao_Paulo"
DISHES = {dish.name: dish for dish in MENU}
DAYS = [datetime(2026, 11, 20, tzinfo=UTC) + timedelta(days=n) for n in range(3)]
HAND_HOUR = DAYS[2] + timedelta(hours=18)
"""An hour of hand-made orders on the last day: 15:00 in São Paulo."""
EMPTY_MINUTE = HAND_HOUR + timedelta(minutes=30)
SPIKE_MINUTE = HAND_HOUR + timedelta(minutes=31)
TIE_MINUTE = HAND_HOUR + timedelta(minutes=32)
LATE_MINUTE = HAND_HOUR + timedelta(minutes=5)
NEW_OLD_MINUTE = DAYS[1] + timedelta(hours=10, seconds=30)
SLOW_MINUTE = DAYS[1] + timedelta(hours=14, minutes=20)
"""A lunch minute of the second day, where an order arrives whose transaction commits late."""


def make_order(at: datetime, customer: int, lines: Sequence[tuple[str, int]],
               channel: str = "dine_in", payment: str = "pix") -> Order:
    items = [OrderItem(dish=name, category=DISHES[name].category, unit_price=DISHES[name].price,
                       quantity=quantity) for name, quantity in lines]
    return Order(order_id=str(uuid.uuid4()), created_at=at, customer_id=customer,
                 customer_name=f"Cliente {customer}", channel=channel, payment_method=payment,
                 items=items, total=sum((i.unit_price * i.quantity for i in items), Decimal(0)))


def history() -> list[Order]:
    """Lunch on three days from the generator, and an hour of hand-made special cases."""
    generator = OrderGenerator(seed=11, timezone_name=ZONE)
    orders = [
        order
        for day in DAYS
        for tick in range(0, 2 * 3600, 40)
        for order in generator.orders_for_tick(1, day + timedelta(hours=14, seconds=tick))
    ]
    # One order a minute (each a window with one order), then an empty minute, then a spike.
    orders += [make_order(HAND_HOUR + timedelta(minutes=m, seconds=10), 9000 + m,
                          [("Pizza Margherita", 1)], channel="takeaway") for m in range(30)]
    orders += [make_order(SPIKE_MINUTE + timedelta(seconds=s), 9100 + s, [("Picanha na Chapa", 2)],
                          payment="credit_card") for s in range(12)]
    # A tie for the top dish: Brigadeiro Gourmet wins over Caipirinha by name.
    orders += [make_order(TIE_MINUTE, 9200, [("Caipirinha", 2)]),
               make_order(TIE_MINUTE + timedelta(seconds=5), 9201, [("Brigadeiro Gourmet", 2)])]
    # The next hour sells salads instead of pizza: one dish trends up, the other down.
    orders += [make_order(HAND_HOUR + timedelta(hours=1, minutes=m), 9300 + m, [("Salada Caesar", 2)])
               for m in range(6)]
    return orders


def late_orders() -> list[Order]:
    """Orders that arrive after the first run, for windows that run already reported."""
    return [
        make_order(LATE_MINUTE + timedelta(seconds=40), 9005, [("Pizza Margherita", 3)]),
        make_order(DAYS[0] + timedelta(hours=14, minutes=30, seconds=1), 7777, [("Sushi Combo", 1)],
                   channel="delivery", payment="meal_voucher"),
        make_order(NEW_OLD_MINUTE, 7778, [("Risotto de Camarão", 1), ("Água com Gás", 2)]),
    ]


def slow_order() -> Order:
    return make_order(SLOW_MINUTE + timedelta(seconds=15), 7779, [("Lasanha Bolonhesa", 2)],
                      channel="delivery")


def after_the_first_run() -> list[Order]:
    """The orders of the timeline stored after its first run."""
    return [*late_orders(), slow_order()]


def run_job(url: str, full: bool = False, **changes: str) -> dict:
    """One run of the job in this process, as ``python -m spark_reports`` would do it."""
    settings = replace(Settings.from_env(), database_url=url, spark_driver_memory="512m", **changes)
    return asdict(job.run(settings, full=full))


def save(url: str, orders: list[Order]) -> None:
    asyncio.run(save_orders(url, orders))


def insert_uncommitted(url: str, order: Order) -> psycopg.Connection:
    """Insert ``order`` in a transaction left open; the caller commits it on the connection returned.

    Its ingested_at says it was inserted a day ago: the lateness margin of the old scope
    (ingested_at after the last run less 120 s) would never have read it after its commit.
    """
    conn = psycopg.connect(url)
    # Its key first, and its lines with its created_at, as the save path does (migration 006).
    conn.execute("INSERT INTO order_keys (order_id, created_at) VALUES (%s, %s)",
                 (order.order_id, order.created_at))
    conn.execute(f"INSERT INTO orders ({ORDER_NAMES}, ingested_at)"
                 f" VALUES ({', '.join(['%s'] * len(ORDER_COLUMNS))}, now() - interval '1 day')",
                 next(order_rows([order])))
    with conn.cursor() as cursor:
        cursor.executemany(f"INSERT INTO order_items ({ITEM_NAMES}, order_created_at)"
                           f" VALUES ({', '.join(['%s'] * (len(ITEM_COLUMNS) + 1))})",
                           [(*row, order.created_at) for row in item_rows([order])])
    return conn


# The chain's rows (store_id '', the last column); every order here is of the store 'main'.
REPORT_TABLES = {
    "report_sales": "SELECT * FROM report_sales WHERE store_id = %s ORDER BY 1, 2",
    "report_dishes": "SELECT * FROM report_dishes WHERE store_id = %s ORDER BY 1, 2, 3",
    "report_customers": "SELECT * FROM report_customers WHERE store_id = %s ORDER BY 1, 2, 3",
    "report_insights": "SELECT * FROM report_insights WHERE store_id = %s ORDER BY 1, 2, 4",
    # Kept for the chain only (no store_id): a store's week and month are counted when read.
    "report_period_customers": "SELECT * FROM report_period_customers WHERE %s = '' ORDER BY 1, 2",
}


def snapshot(url: str, store: str = CHAIN_STORE) -> dict[str, list[tuple]]:
    return {table: query(url, sql, (store,)) for table, sql in REPORT_TABLES.items()}


def without_computed_at(tables: dict[str, list[tuple]], url: str) -> dict[str, list[tuple]]:
    """The rows without their computed_at column, which says when, not what, and with their
    store_id last (columns added after it come before it)."""
    result = {}
    for table, rows in tables.items():
        with psycopg.connect(url) as conn:
            names = [c.name for c in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
        keep = [i for i, name in enumerate(names) if name not in ("computed_at", "store_id")]
        keep += [names.index("store_id")] if "store_id" in names else []
        result[table] = [tuple(row[i] for i in keep) for row in rows]
    return result


FAIL_WHILE_PUBLISHING = """
CREATE FUNCTION fail_publishing() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'simulated failure while publishing the reports'; END $$;
CREATE TRIGGER fail_publishing BEFORE INSERT ON report_insights
FOR EACH STATEMENT EXECUTE FUNCTION fail_publishing();
"""


@dataclass
class Timeline:
    """The runs of the module and the state of the report tables after each."""

    url: str
    first: dict
    after_first: dict
    expected_first: dict
    failed: dict
    after_failed: dict
    recovered: dict
    after_recovered: dict
    expected_recovered: dict
    during: dict
    after_during: dict
    late_commit: dict
    after_late_commit: dict
    expected_late_commit: dict
    full: dict
    after_full: dict
    orders_in_late_minutes: int
    orders_in_slow_minute: int


@pytest.fixture(scope="module")
def timeline(stack: ScratchStack) -> Timeline:
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    save(url, history())
    first = run_job(url)
    after_first, expected_first = snapshot(url), expected(url)

    save(url, late_orders())
    with psycopg.connect(url) as conn:
        conn.execute(FAIL_WHILE_PUBLISHING)
    failed = run_job(url)
    after_failed = snapshot(url)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TRIGGER fail_publishing ON report_insights")

    recovered = run_job(url)
    after_recovered, expected_recovered = snapshot(url), expected(url)

    slow = insert_uncommitted(url, slow_order())
    during = run_job(url)
    after_during = snapshot(url)
    slow.commit()
    slow.close()
    late_commit = run_job(url)
    after_late_commit, expected_late_commit = snapshot(url), expected(url)
    full = run_job(url, full=True)
    after_full = snapshot(url)
    orders_in_late_minutes = query(url, """
        SELECT count(*) FROM orders WHERE date_trunc('minute', created_at) IN
            (SELECT date_trunc('minute', created_at) FROM orders
             WHERE ingested_at > now() - interval '10 minutes' AND customer_id IN (9005, 7777, 7778))
    """)[0][0]
    orders_in_slow_minute = query(
        url, "SELECT count(*) FROM orders WHERE date_trunc('minute', created_at) = %s", (SLOW_MINUTE,))[0][0]
    return Timeline(url, first, after_first, expected_first, failed, after_failed, recovered,
                    after_recovered, expected_recovered, during, after_during, late_commit,
                    after_late_commit, expected_late_commit, full, after_full,
                    orders_in_late_minutes, orders_in_slow_minute)


# ---- the independent SQL computation -------------------------------------------------------

EXPECTED_SALES = """
WITH o AS (
    SELECT o.*, date_trunc(%(unit)s, o.created_at, %(zone)s) AS p FROM orders o
), items AS (
    SELECT o.p, sum(i.quantity) AS items_sold FROM o JOIN order_items i USING (order_id) GROUP BY o.p
), top AS (
    SELECT DISTINCT ON (o.p) o.p, i.dish, sum(i.quantity) AS quantity
    FROM o JOIN order_items i USING (order_id)
    GROUP BY o.p, i.dish ORDER BY o.p, sum(i.quantity) DESC, i.dish COLLATE "C"
), channels AS (
    SELECT p, jsonb_object_agg(channel, revenue) AS revenue
    FROM (SELECT p, channel, sum(total) AS revenue FROM o GROUP BY p, channel) c GROUP BY p
), payments AS (
    SELECT p, jsonb_object_agg(payment_method, revenue) AS revenue
    FROM (SELECT p, payment_method, sum(total) AS revenue FROM o GROUP BY p, payment_method) c
    GROUP BY p
)
SELECT o.p, (o.p AT TIME ZONE %(zone)s + ('1 ' || %(unit)s)::interval) AT TIME ZONE %(zone)s,
       count(*), items.items_sold, sum(o.total), round(sum(o.total) / count(*), 2),
       count(DISTINCT o.customer_id), round(sum(o.total) / count(DISTINCT o.customer_id), 2),
       top.dish, top.quantity, channels.revenue, payments.revenue
FROM o JOIN items USING (p) JOIN top USING (p) JOIN channels USING (p) JOIN payments USING (p)
GROUP BY o.p, items.items_sold, top.dish, top.quantity, channels.revenue, payments.revenue
ORDER BY o.p
"""

ACTUAL_SALES = """
SELECT period_start, period_end, orders, items_sold, gross_revenue, avg_ticket, unique_customers,
       avg_spend_per_customer, top_dish, top_dish_quantity, revenue_by_channel, revenue_by_payment
FROM report_sales WHERE granularity = %s AND store_id = '' ORDER BY period_start
"""

EXPECTED_DISHES = """
SELECT date_trunc(%(unit)s, o.created_at, %(zone)s) AS p, i.dish, sum(i.quantity),
       sum(i.unit_price * i.quantity),
       row_number() OVER (PARTITION BY date_trunc(%(unit)s, o.created_at, %(zone)s)
                          ORDER BY sum(i.quantity) DESC, i.dish COLLATE "C")
FROM orders o JOIN order_items i USING (order_id)
GROUP BY 1, 2 ORDER BY 1, 2
"""

ACTUAL_DISHES = """
SELECT period_start, dish, quantity, revenue, rank FROM report_dishes
WHERE granularity = %s AND store_id = '' ORDER BY period_start, dish
"""

HOURS = f"""
WITH m AS (SELECT date_trunc('minute', created_at) AS minute, sum(total) AS revenue
           FROM orders GROUP BY 1)
SELECT date_trunc('hour', minute, '{ZONE}') AS hour, sum(revenue) AS revenue,
       max(minute) + interval '1 minute' AS span_end
FROM m GROUP BY 1
"""

EXPECTED_COMPARISONS = f"""
WITH h AS ({HOURS})
SELECT h.hour, h.span_end, h.revenue,
       (SELECT coalesce(sum(total), 0) FROM orders
        WHERE created_at >= h.hour - %(back)s * interval '1 hour'
          AND created_at < h.span_end - %(back)s * interval '1 hour')
FROM h
"""

EXPECTED_DISH_CHANGES = f"""
WITH h AS ({HOURS}),
now AS (
    SELECT h.hour, i.dish, sum(i.quantity) AS quantity
    FROM h JOIN orders o ON o.created_at >= h.hour AND o.created_at < h.hour + interval '1 hour'
    JOIN order_items i USING (order_id) GROUP BY 1, 2
), before AS (
    SELECT h.hour, i.dish, sum(i.quantity) AS quantity
    FROM h JOIN orders o ON o.created_at >= h.hour - interval '1 hour'
                        AND o.created_at < h.span_end - interval '1 hour'
    JOIN order_items i USING (order_id) GROUP BY 1, 2
)
SELECT hour, dish, coalesce(now.quantity, 0), coalesce(before.quantity, 0)
FROM now FULL JOIN before USING (hour, dish)
"""

EXPECTED_TRAILING_HOURS = """
WITH m AS (SELECT date_trunc('minute', created_at) AS minute, sum(total) AS revenue
           FROM orders GROUP BY 1)
SELECT m.minute, m.revenue, avg(coalesce(t.revenue, 0)), stddev_pop(coalesce(t.revenue, 0)),
       count(t.revenue)
FROM m
CROSS JOIN LATERAL generate_series(m.minute - interval '60 minutes', m.minute - interval '1 minute',
                                   interval '1 minute') AS s (minute)
LEFT JOIN m t ON t.minute = s.minute
GROUP BY m.minute, m.revenue
"""


EXPECTED_PERIOD_CUSTOMERS = """
SELECT u.unit, date_trunc(u.unit, o.created_at, %(zone)s), count(DISTINCT o.customer_id)
FROM orders o CROSS JOIN unnest(ARRAY['month', 'week']) AS u (unit)
WHERE o.customer_id IS NOT NULL
GROUP BY 1, 2 ORDER BY 1, 2
"""
"""The unique customers of each week (from Monday) and month on the restaurant's clock."""


def expected(url: str) -> dict:
    return {
        "period_customers": query(url, EXPECTED_PERIOD_CUSTOMERS, {"zone": ZONE}),
        "sales": {unit: query(url, EXPECTED_SALES, {"unit": unit, "zone": ZONE})
                  for unit in ("minute", "hour", "day")},
        "dishes": {unit: query(url, EXPECTED_DISHES, {"unit": unit, "zone": ZONE})
                   for unit in ("minute", "hour", "day")},
        "insights": expected_insights(url),
    }


def expected_insights(url: str) -> dict[tuple, dict]:
    """(kind, window start, subject) -> figures, computed without Spark."""
    insights: dict[tuple, dict] = {}
    for hour, dish, quantity, revenue, rank in query(url, EXPECTED_DISHES, {"unit": "hour", "zone": ZONE}):
        if rank == 1:
            insights["top_dish", hour, ""] = {"dish": dish, "quantity": quantity, "revenue": revenue}
    previous_revenue = {}
    for kind, back in (("revenue_vs_previous_hour", 1), ("revenue_vs_same_hour_yesterday", 24)):
        for hour, span_end, revenue, previous in query(url, EXPECTED_COMPARISONS, {"back": back}):
            change = round((revenue - previous) * 100 / previous, 1) if previous else None
            insights[kind, hour, ""] = {
                "revenue": revenue, "previous_revenue": previous, "change_pct": change,
                "minutes": int((span_end - hour).total_seconds() // 60),
            }
            if back == 1:
                previous_revenue[hour] = previous
    for hour, dish, now, before in query(url, EXPECTED_DISH_CHANGES):
        if not previous_revenue[hour]:
            continue
        if now - before >= TREND_MIN_CHANGE and now >= before * TREND_MIN_RATIO:
            kind = "dish_trending_up"
        elif before - now >= TREND_MIN_CHANGE and before >= now * TREND_MIN_RATIO:
            kind = "dish_trending_down"
        else:
            continue
        insights[kind, hour, dish] = {"dish": dish, "quantity": now, "previous_quantity": before,
                                      "change": now - before}
    for minute, revenue, mean, std, active in query(url, EXPECTED_TRAILING_HOURS):
        if active >= ANOMALY_MIN_ACTIVE_MINUTES and std > 0:
            z = float((revenue - mean) / std)
            if abs(z) >= ANOMALY_Z_SCORE:
                insights["anomalous_minute", minute, ""] = {
                    "revenue": revenue, "trailing_mean": mean, "trailing_std": std,
                    "z_score": z, "active_minutes": active,
                }
    return insights


def actual_insights(url: str) -> dict[tuple, dict]:
    rows = query(url, "SELECT kind, window_start, subject, figures FROM report_insights WHERE store_id = ''")
    return {(kind, start, subject): figures for kind, start, subject, figures in rows}


def same_figures(actual: dict, wanted: dict) -> bool:
    """Equal figures; rounded ones (means, deviations, z-scores) within their rounding."""
    if actual.keys() != wanted.keys():
        return False
    for name, value in wanted.items():
        if isinstance(value, (Decimal, float)) and value is not None:
            if actual[name] != pytest.approx(float(value), abs=0.011):
                return False
        elif actual[name] != value:
            return False
    return True


# ---- the tests ------------------------------------------------------------------------------


def test_every_run_of_the_timeline_ended_as_expected(timeline: Timeline):
    assert timeline.first["status"] == "succeeded", timeline.first
    assert timeline.failed["status"] == "failed"
    assert timeline.recovered["status"] == "succeeded", timeline.recovered
    assert timeline.during["status"] == "succeeded", timeline.during
    assert timeline.late_commit["status"] == "succeeded", timeline.late_commit
    assert timeline.full["status"] == "succeeded", timeline.full


def sales_rows(tables: dict, unit: str) -> list[tuple]:
    """The report_sales rows of one granularity, in the columns of EXPECTED_SALES."""
    return [row[1:13] for row in tables["report_sales"] if row[0] == unit]


def dish_rows(tables: dict, unit: str) -> list[tuple]:
    return [row[1:6] for row in tables["report_dishes"] if row[0] == unit]


@pytest.mark.parametrize("unit", ["minute", "hour", "day"])
def test_reports_equal_sql_over_the_orders(timeline: Timeline, unit: str):
    for tables, wanted in ((timeline.after_first, timeline.expected_first),
                           (timeline.after_recovered, timeline.expected_recovered),
                           (timeline.after_late_commit, timeline.expected_late_commit)):
        assert sales_rows(tables, unit) == wanted["sales"][unit]
        assert dish_rows(tables, unit) == wanted["dishes"][unit]
    assert len(timeline.expected_recovered["sales"]["day"]) == 3


def test_week_and_month_customer_counts_equal_sql_over_the_orders(timeline: Timeline):
    for tables, wanted in ((timeline.after_first, timeline.expected_first),
                           (timeline.after_recovered, timeline.expected_recovered),
                           (timeline.after_late_commit, timeline.expected_late_commit)):
        assert tables["report_period_customers"] == wanted["period_customers"]
    first, last = (dict(((unit, start), count) for unit, start, count in tables["report_period_customers"])
                   for tables in (timeline.after_first, timeline.after_late_commit))
    assert first.keys() == last.keys() and len(first) == 2
    # The late orders' customers (7777, 7778, 7779, ...) were added to the counts made by the first run.
    assert all(last[period] > first[period] for period in first)


def test_insights_equal_sql_over_the_orders(timeline: Timeline):
    actual = actual_insights(timeline.url)
    wanted = timeline.expected_late_commit["insights"]
    assert actual.keys() == wanted.keys()
    different = [key for key in wanted if not same_figures(actual[key], wanted[key])]
    assert not different, [(key, actual[key], wanted[key]) for key in different[:5]]
    kinds = {key[0] for key in actual}
    assert kinds == {"top_dish", "revenue_vs_previous_hour", "revenue_vs_same_hour_yesterday",
                     "dish_trending_up", "dish_trending_down", "anomalous_minute"}


def test_insights_are_figures_that_read_as_plain_language(timeline: Timeline):
    rows = query(timeline.url, "SELECT kind, subject, window_start, window_end, figures, message"
                               " FROM report_insights WHERE window_start >= %s AND store_id = ''",
                 (HAND_HOUR,))
    assert rows and all(row[5] is None for row in rows)  # the job stores figures, not sentences
    insights = {f"{kind}/{subject}": {"kind": kind, "window_start": start, "window_end": end,
                                      "figures": figures}
                for kind, subject, start, end, figures, _ in rows}
    zone = ZoneInfo(Settings.from_env().restaurant_timezone)

    def said(key: str, lang: str = "en") -> str | None:
        return insight_message(insights[key], lang, zone)

    assert said("anomalous_minute/") == (
        "Unusual minute at 22/11/2026 15:31: revenue R$ 2.157,60 is well above the previous"
        " hour's average of R$ 30,20 a minute (z-score 57,9)."
    )
    assert said("anomalous_minute/", "pt-BR") == (
        "Minuto atípico em 22/11/2026 15:31: faturamento de R$ 2.157,60, bem acima da média da"
        " hora anterior, de R$ 30,20 por minuto (z-score 57,9)."
    )
    assert said("dish_trending_up/Salada Caesar") == (
        "Salada Caesar is selling more: 12 sold from 22/11/2026 16:00 to 16:06, against 0 in the"
        " same minutes of the previous hour."
    )
    assert said("top_dish/").startswith("Best-selling dish from 22/11/2026 16:00 to 17:00: Salada Caesar")


def test_special_windows(timeline: Timeline):
    minutes = {row[0]: row for row in query(timeline.url, ACTUAL_SALES, ("minute",))}
    assert EMPTY_MINUTE not in minutes  # a minute without orders has no row: read it as zero
    assert minutes[TIE_MINUTE][8:10] == ("Brigadeiro Gourmet", 2)
    single = minutes[HAND_HOUR + timedelta(minutes=7)]
    assert single[2] == 1 and single[5] == single[4] == Decimal("54.90")  # one order: its own ticket
    late = minutes[LATE_MINUTE]
    assert late[2] == 2 and late[6] == 1  # the late order joined its old window; same customer
    assert late[5] == Decimal("109.80") and late[7] == Decimal("219.60")
    first = {row[1]: row for row in timeline.after_first["report_sales"] if row[0] == "minute"}
    assert first[LATE_MINUTE][3] == 1
    assert NEW_OLD_MINUTE.replace(second=0) in minutes


def test_relatorio_vendas_has_the_seed_columns(timeline: Timeline):
    rows = query(timeline.url, "SELECT periodo, total_vendas, prato_mais_vendido, quantidade_total,"
                               " ticket_medio, created_at, gasto_medio_por_cliente FROM relatorio_vendas"
                               " WHERE periodo = %s", (LATE_MINUTE,))
    # two orders of one customer: ticket médio is revenue per order, as everywhere else
    assert rows[0][:5] == (LATE_MINUTE, Decimal("219.60"), "Pizza Margherita", 4, Decimal("109.80"))
    assert rows[0][6] == Decimal("219.60")
    count = query(timeline.url, "SELECT count(*) FROM relatorio_vendas")[0][0]
    assert count == len(timeline.expected_late_commit["sales"]["minute"])


def test_an_incremental_run_reads_only_the_changed_minutes(timeline: Timeline):
    total = query(timeline.url, "SELECT count(*) FROM orders")[0][0]
    assert timeline.first["orders_read"] == total - len(after_the_first_run())
    assert timeline.recovered["orders_read"] == timeline.orders_in_late_minutes < total / 20
    assert timeline.late_commit["orders_read"] == timeline.orders_in_slow_minute < total / 100


def test_a_failed_run_leaves_the_reports_as_they_were_but_its_closed_minutes(timeline: Timeline):
    failed, first = timeline.after_failed, timeline.after_first
    # PostgreSQL published the run's closed minutes before Spark started: with the late orders.
    assert sales_rows(failed, "minute") == timeline.expected_recovered["sales"]["minute"]
    assert dish_rows(failed, "minute") == timeline.expected_recovered["dishes"]["minute"]
    assert sales_rows(failed, "minute") != sales_rows(first, "minute")
    # Everything else is as the run before left it.
    for unit in ("hour", "day"):
        assert sales_rows(failed, unit) == sales_rows(first, unit)
        assert dish_rows(failed, unit) == dish_rows(first, unit)
    assert {table: rows for table, rows in failed.items() if table not in ("report_sales", "report_dishes")} \
        == {table: rows for table, rows in first.items() if table not in ("report_sales", "report_dishes")}
    assert "simulated failure while publishing the reports" in timeline.failed["error"]
    status, error = query(timeline.url, "SELECT status, error FROM report_runs WHERE run_id = %s",
                          (timeline.failed["run_id"],))[0]
    assert status == "failed" and "simulated failure" in error
    # The run after it covered its windows: the late orders are in the reports.
    assert timeline.recovered["orders_read"] > 0
    assert timeline.after_recovered != timeline.after_first


def test_an_order_committed_long_after_its_insert_is_reported(timeline: Timeline):
    # The run while its transaction was open did not see it, and had nothing else to do.
    assert (timeline.during["windows"], timeline.during["orders_read"]) == (0, 0)
    assert timeline.after_during == timeline.after_recovered
    # The run after the commit read it, though it was inserted (ingested_at) a day ago.
    assert timeline.late_commit["windows"] > 0
    minute = {row[1]: row for row in timeline.after_late_commit["report_sales"] if row[0] == "minute"}
    before = {row[1]: row for row in timeline.after_recovered["report_sales"] if row[0] == "minute"}
    earlier = before[SLOW_MINUTE][3] if SLOW_MINUTE in before else 0
    assert minute[SLOW_MINUTE][3] == earlier + 1 == timeline.orders_in_slow_minute
    assert minute[SLOW_MINUTE][11]["delivery"] >= float(slow_order().total)


def test_a_single_stores_reports_are_the_chains(timeline: Timeline):
    """Every order is of the store 'main': its rows are the chain's, but for their store_id (last)."""
    chain = without_computed_at(timeline.after_late_commit, timeline.url)
    main = without_computed_at(snapshot(timeline.url, DEFAULT_STORE), timeline.url)
    assert chain["report_sales"]
    for table in ("report_sales", "report_dishes", "report_customers", "report_insights"):
        # Weeks and months keep their customers for the chain only.
        rows = [row for row in chain[table] if table != "report_customers" or row[0] in ("hour", "day")]
        assert [row[:-1] for row in main[table]] == [row[:-1] for row in rows], table
        assert {row[-1] for row in main[table]} == {DEFAULT_STORE}


def test_full_rebuild_equals_the_incremental_result(timeline: Timeline):
    assert timeline.full["orders_read"] == query(timeline.url, "SELECT count(*) FROM orders")[0][0]
    assert without_computed_at(timeline.after_full, timeline.url) == without_computed_at(
        timeline.after_late_commit, timeline.url)


def test_report_runs_record_every_run(timeline: Timeline):
    runs = query(timeline.url, "SELECT run_id, mode, status, finished_at >= started_at,"
                               " windows_written, orders_read, rows_read FROM report_runs ORDER BY run_id")
    assert [(mode, status) for _, mode, status, *_ in runs] == [
        ("incremental", "succeeded"), ("incremental", "failed"), ("incremental", "succeeded"),
        ("incremental", "succeeded"), ("incremental", "succeeded"), ("full", "succeeded"),
    ]
    assert all(row[3] for row in runs)
    first = runs[0]
    assert first[4] == timeline.first["windows"] == len(timeline.after_first["report_sales"])
    later_lines = sum(len(order.items) for order in after_the_first_run())
    assert first[6] == query(timeline.url, "SELECT count(*) FROM order_items")[0][0] - later_lines


# ---- quick cases on their own small databases ---------------------------------------------


def test_no_new_orders_means_no_spark_and_no_change(stack: ScratchStack):
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    result = run_report_job(url)
    assert result["status"] == "succeeded" and result["windows"] == 0
    assert result["seconds"] < 10


def test_missing_java_gives_a_clear_error_and_is_recorded(stack: ScratchStack):
    url = stack.new_database()
    save(url, [make_order(DAYS[0], 1, [("Caipirinha", 1)])])
    result = run_report_job(url, env={"JAVA_HOME": "/nonexistent-java"})
    assert result["status"] == "failed" and result["exit_code"] == 1
    assert "Java 17 or newer is needed" in result["error"]
    assert query(url, "SELECT status, error FROM report_runs") == [("failed", result["error"])]
    assert query(url, "SELECT count(*) FROM report_sales") == [(0,)]


def test_a_second_job_skips_while_one_holds_the_lock(stack: ScratchStack):
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (REPORT_LOCK_ID,))
        result = run_report_job(url)
    assert result["status"] == "skipped" and result["exit_code"] == 0
    assert query(url, "SELECT count(*) FROM report_runs") == [(0,)]


def test_orders_that_fail_every_run_are_skipped_after_a_few_and_listed(
    stack: ScratchStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """Without Java every run with windows fails before Spark starts, which is enough to count failures."""
    caplog.set_level(logging.INFO, logger="spark_reports")
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    start = run_job(url)["run_id"]  # no orders: the snapshot the next runs start from
    failing = DAYS[0] + timedelta(minutes=1)
    save(url, [make_order(failing, 1, [("Caipirinha", 1)])])
    monkeypatch.setenv("JAVA_HOME", "/nonexistent-java")
    failed = [run_job(url)["run_id"] for _ in range(FAILURES_BEFORE_SKIPPING)]
    save(url, [make_order(DAYS[0] + timedelta(minutes=m), m, [("Caipirinha", 1)]) for m in (2, 3)])
    skipping = run_job(url)["run_id"]
    retry = run_job(url)["run_id"]

    runs = query(url, "SELECT run_id, status, since_run FROM report_runs ORDER BY run_id")
    assert runs == [(start, "succeeded", None)] + [(run, "failed", start) for run in failed] + [
        (skipping, "failed", failed[-1]), (retry, "failed", failed[-1])]
    # Each failed run read the failing minute again; the skipping run and the retry after it
    # read only the two minutes of the newer orders.
    scopes = [int(found[1]) for record in caplog.records
              if (found := re.search(r"recomputing (\d+) minute", record.getMessage()))]
    assert scopes == [0, 1, 1, 1, 2, 2]
    assert query(url, "SELECT period_start, run_id FROM report_skipped_windows") == [(failing, skipping)]
    [note] = query(url, "SELECT error FROM report_runs WHERE run_id = %s", (skipping,))[0]
    assert note.startswith(f"3 runs failed on the orders committed after run {start}, so this run"
                           f" skips ahead to those committed after run {failed[-1]}. 1 minute window(s)")
    assert note.endswith("Java 17 or newer is needed for Kafka and Spark, but no 'java' was found."
                         " Install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME.")
    assert any(r.levelname == "WARNING" and "runs failed on" in r.getMessage() for r in caplog.records)

    monkeypatch.undo()  # Java again: the runs succeed
    recovered, filled = run_job(url), run_job(url)
    assert recovered["status"] == filled["status"] == "succeeded"
    scopes = [int(found[1]) for record in caplog.records
              if (found := re.search(r"recomputing (\d+) minute", record.getMessage()))]
    # The first success reads the newer orders again; the run after it, the skipped minute alone.
    assert scopes[-2:] == [2, 1]
    assert query(url, "SELECT retried_skips FROM report_runs WHERE run_id IN (%s, %s) ORDER BY run_id",
                 (recovered["run_id"], filled["run_id"])) == [(False,), (True,)]
    assert query(url, "SELECT count(*) FROM report_skipped_windows") == [(0,)]
    assert sales_rows(snapshot(url), "minute") == expected(url)["sales"]["minute"]


def test_runs_failed_by_an_outage_never_skip_orders_and_the_next_success_reads_them_all(
    stack: ScratchStack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="spark_reports")
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    start = run_job(url)["run_id"]
    unreachable = f"sc://127.0.0.1:{free_port()}"
    failed = []
    for minute in range(1, FAILURES_BEFORE_SKIPPING + 3):
        save(url, [make_order(DAYS[0] + timedelta(minutes=minute), minute, [("Caipirinha", minute)])])
        failed.append(run_job(url, spark_remote=unreachable))
    assert [run["status"] for run in failed] == ["failed"] * len(failed)
    assert all("(SPARK_REMOTE) is unreachable" in run["error"] for run in failed)
    back = run_job(url)
    assert back["status"] == "succeeded" and back["windows"] > 0
    runs = query(url, "SELECT run_id, status, since_run, outage FROM report_runs ORDER BY run_id")
    assert runs == [(start, "succeeded", None, False),
                    *[(run["run_id"], "failed", start, True) for run in failed],
                    (back["run_id"], "succeeded", start, False)]
    assert query(url, "SELECT count(*) FROM report_skipped_windows") == [(0,)]
    assert "skips ahead" not in caplog.text
    assert "an outage: the next run reads the same orders again" in caplog.text
    for unit in ("minute", "hour", "day"):
        assert sales_rows(snapshot(url), unit) == expected(url)["sales"][unit]
