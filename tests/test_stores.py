"""Stores of a chain through the real worker and the real report job: stored, and revenue by store."""

import asyncio
import json
import os
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import psycopg
import pytest
from psycopg import sql

from infra.scratch import ScratchStack, WorkerProcess, faust_command
from restaurant_app import database as database_module
from restaurant_app.database import Database
from restaurant_app.menu import MENU
from restaurant_app.models import Order, OrderItem
from restaurant_app.report_tables import CHAIN_STORE
from restaurant_app.settings import PROJECT_ROOT
from tests import test_reports_job as reports_job
from tests.services import consume_all, execute, get, produce, query, run_report_job, wait_until

pytestmark = pytest.mark.integration

HOUR = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
BY_STORE = ("SELECT revenue_by_store FROM report_sales"
            " WHERE granularity = %s AND period_start = %s AND store_id = ''")


def order(at: datetime, store: str, dish_index: int) -> Order:
    dish = MENU[dish_index]
    items = [OrderItem(dish=dish.name, category=dish.category, unit_price=dish.price, quantity=1)]
    return Order(order_id=str(uuid.uuid4()), store_id=store, created_at=at, channel="dine_in",
                 payment_method="pix", items=items, total=dish.price)


def revenue_by_store(orders: list[Order]) -> dict[str, Decimal]:
    totals: Counter = Counter()
    for o in orders:
        totals[o.store_id] += o.total
    return dict(totals)


def as_amounts(breakdown: dict[str, object]) -> dict[str, Decimal]:
    return {store: Decimal(str(amount)) for store, amount in breakdown.items()}


def unstored(order: Order) -> bytes:
    """``order`` as a single store's point of sale writes it: no store_id."""
    return json.dumps({k: v for k, v in json.loads(order.dumps()).items() if k != "store_id"}).encode()


def send(stack: ScratchStack, worker: WorkerProcess, database_url: str, messages: list[bytes],
         total: int) -> None:
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, m) for m in messages])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == total,
               message="the orders never arrived")


def test_each_order_keeps_its_store_and_the_reports_give_revenue_by_store(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    first_minute = HOUR + timedelta(minutes=5)
    first = [order(first_minute + timedelta(seconds=s), store, s)
             for s, store in enumerate(["loja-centro", "loja-centro", "loja-praia", "main"])]
    worker.start()
    send(stack, worker, database_url, [o.dumps() for o in first[:3]] + [unstored(first[3])], len(first))
    stored = query(database_url, "SELECT order_id::text, store_id FROM orders")
    assert sorted(stored) == sorted((o.order_id, o.store_id) for o in first)
    assert run_report_job(database_url)["exit_code"] == 0
    (minute,) = query(database_url, BY_STORE, ("minute", first_minute))
    assert as_amounts(minute[0]) == revenue_by_store(first)

    # A later minute of the same hour: the next run adds it to the first minute's stored figures.
    later = [order(HOUR + timedelta(minutes=40, seconds=s), store, 5 + s)
             for s, store in enumerate(["loja-praia", "loja-norte"])]
    send(stack, worker, database_url, [o.dumps() for o in later], len(first) + len(later))
    assert run_report_job(database_url)["exit_code"] == 0
    (hour,) = query(database_url, BY_STORE, ("hour", HOUR))
    assert as_amounts(hour[0]) == revenue_by_store(first + later)
    assert sum(as_amounts(hour[0]).values()) == query(
        database_url, "SELECT gross_revenue FROM report_sales WHERE granularity = 'hour' AND store_id = %s",
        (CHAIN_STORE,))[0][0]

    status, body = get(f"{worker.url}/reports/latest")
    assert status == 200
    assert as_amounts(body["hour"]["revenue_by_store"]) == revenue_by_store(first + later)


# ---- reports per store and for the chain, against SQL over each store's orders ----------------

STORES = ("centro", "praia", "norte")


def in_stores(orders: list[Order]) -> list[Order]:
    """``orders`` spread over ``STORES`` in turn; the hand-made special cases stay together in the first."""
    return [msgspec.structs.replace(o, store_id=STORES[i % len(STORES)] if (o.customer_id or 0) < 9000
                                    else STORES[0]) for i, o in enumerate(orders)]


def store_url(url: str, store: str) -> str:
    """``url`` on which ``orders`` means the store's orders only (a view first on the search path)."""
    schema = f"only_{store}"
    execute(url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    execute(url, sql.SQL("CREATE VIEW {}.orders AS SELECT * FROM public.orders WHERE store_id = {}")
            .format(sql.Identifier(schema), sql.Literal(store)))
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema},public"


def actual(url: str, store: str) -> dict:
    """The store's (or the chain's) report rows, in the shape of ``expected``."""
    return {
        "sales": {unit: [row[:12] for row in query(url, STORE_SALES, (unit, store))] for unit in UNITS},
        "dishes": {unit: query(url, STORE_DISHES, (unit, store)) for unit in UNITS},
        "insights": {(kind, start, subject): figures for kind, start, subject, figures in query(
            url, "SELECT kind, window_start, subject, figures FROM report_insights WHERE store_id = %s",
            (store,))},
    }


UNITS = ("minute", "hour", "day")
STORE_SALES = reports_job.ACTUAL_SALES.replace("store_id = ''", "store_id = %s")
STORE_DISHES = reports_job.ACTUAL_DISHES.replace("store_id = ''", "store_id = %s")


def assert_equal_reports(wanted: dict, got: dict) -> None:
    for unit in UNITS:
        assert got["sales"][unit] == wanted["sales"][unit], unit
        assert got["dishes"][unit] == wanted["dishes"][unit], unit
    assert got["insights"].keys() == wanted["insights"].keys()
    different = [key for key in wanted["insights"]
                 if not reports_job.same_figures(got["insights"][key], wanted["insights"][key])]
    assert not different, different[:5]


def test_each_store_and_the_chain_have_reports_equal_to_sql_over_their_orders(stack: ScratchStack):
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    reports_job.save(url, in_stores(reports_job.history()))
    assert reports_job.run_job(url)["status"] == "succeeded"
    # Later orders in windows already reported, each in another store: the incremental path.
    late = [msgspec.structs.replace(o, store_id=store)
            for o, store in zip(reports_job.late_orders(), STORES[::-1], strict=False)]
    reports_job.save(url, late)
    assert reports_job.run_job(url)["status"] == "succeeded"
    incremental = every_report_row(url)

    for store in (CHAIN_STORE, *STORES):
        wanted = reports_job.expected(store_url(url, store) if store else url)
        assert wanted["sales"]["day"], store
        assert_equal_reports(wanted, actual(url, store))
    by_store = query(url, "SELECT store_id, count(*) FROM report_insights GROUP BY 1")
    assert {store for store, _ in by_store} == {CHAIN_STORE, *STORES}

    assert reports_job.run_job(url, full=True)["status"] == "succeeded"
    assert every_report_row(url) == incremental


def every_report_row(url: str) -> dict[str, list[str]]:
    """Every store's and the chain's report rows but for when they were computed, in one order."""
    tables = {table: query(url, f"SELECT * FROM {table}") for table in reports_job.REPORT_TABLES}
    timeless = reports_job.without_computed_at(tables, url)
    return {table: sorted(map(str, rows)) for table, rows in timeless.items()}


# ---- the Kafka key: a store's orders in one partition, in the order sent ----------------------


def post_orders(url: str, orders: list[Order]) -> int:
    body = b"[" + b",".join(o.dumps() for o in orders) + b"]"
    request = urllib.request.Request(f"{url}/api/orders", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status


def test_every_producer_keys_an_order_by_its_store_so_a_store_keeps_its_order(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.env.update({"ORDER_SIMULATOR": "on", "SIMULATED_STORES": "3", "ORDER_INTERVAL_SECONDS": "1"})
    worker.start()
    wait_until(lambda: query(database_url, "SELECT count(DISTINCT store_id) FROM orders")[0][0] == 3,
               message="the simulator never sold in its three stores")
    posted = [order(HOUR + timedelta(seconds=s), ("loja-a", "loja-b")[s % 2], s % len(MENU))
              for s in range(20)]
    assert post_orders(worker.url, posted) == 202
    worker.stop()
    loaded = subprocess.run(faust_command("produce-orders", "--count", "30"), cwd=PROJECT_ROOT, timeout=120,
                            env={**os.environ, **worker.env}, capture_output=True, text=True, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]

    # Everything in the topic: the simulator's, the posted and the loaded orders.
    records = consume_all(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], expected=10**6,
                          timeout=8)
    payloads = [json.loads(r.value) for r in records]
    # A cancellation or refund (the simulator's) belongs to its order's store.
    order_stores = {p["order_id"]: p["store_id"] for p in payloads if "store_id" in p}
    stores = [p.get("store_id") or order_stores[p["order_id"]] for p in payloads]
    assert [r.key for r in records] == [store.encode() for store in stores]
    partitions = {store: {r.partition for r, s in zip(records, stores, strict=True) if s == store}
                  for store in stores}
    assert all(len(held) == 1 for held in partitions.values()), partitions
    assert set(stores) >= {"loja-01", "loja-02", "loja-03", "loja-a", "loja-b"}
    for store in ("loja-a", "loja-b"):
        in_topic = [json.loads(r.value)["order_id"] for r in sorted(records, key=lambda r: r.offset)
                    if json.loads(r.value).get("store_id") == store]
        assert in_topic == [o.order_id for o in posted if o.store_id == store]


# ---- migration 018 on reports stored before it ------------------------------------------------

REPORT_ROW = """
INSERT INTO report_sales (granularity, period_start, period_end, orders, items_sold, gross_revenue,
    avg_ticket, unique_customers, avg_spend_per_customer, top_dish, top_dish_quantity,
    revenue_by_channel, revenue_by_payment, revenue_by_store, identified_revenue, computed_at, final)
VALUES (%(unit)s, %(start)s, %(start)s + ('1 ' || %(unit)s)::interval, 2, 3, 30, 15, 1, 30, 'Coxinha', 2,
        '{"dine_in": 30}', '{"pix": 30}', %(stores)s, 30, now(), true);
INSERT INTO report_dishes (granularity, period_start, dish, quantity, revenue, rank)
VALUES (%(unit)s, %(start)s, 'Coxinha', 2, 20, 1), (%(unit)s, %(start)s, 'Suco', 1, 10, 2);
INSERT INTO report_customers (granularity, period_start, customer_id) VALUES (%(unit)s, %(start)s, 7)
"""


def test_migration_018_makes_stored_reports_the_chains_and_copies_one_stores_windows(
    stack: ScratchStack, monkeypatch: pytest.MonkeyPatch
):
    url = stack.new_database()
    earlier = [m for m in database_module.migration_files() if m[0] < "018"]
    with monkeypatch.context() as patch:
        patch.setattr(database_module, "migration_files", lambda: earlier)
        patch.setattr(database_module, "privileges", lambda: "SELECT 1")  # its roles come with 023
        asyncio.run(Database(url).migrate())
    one_store, two_stores = HOUR, HOUR + timedelta(hours=1)
    with psycopg.connect(url, autocommit=True) as conn:
        for unit, start, stores in (("minute", one_store, '{"loja-a": 30}'),
                                    ("hour", one_store, '{"loja-a": 30}'),
                                    ("hour", two_stores, '{"loja-a": 10, "loja-b": 20}')):
            for statement in REPORT_ROW.split(";"):
                conn.execute(statement, {"unit": unit, "start": start, "stores": stores})
    assert "018_reports_per_store" in asyncio.run(Database(url).migrate())

    def rows(table: str, *columns: str) -> list[tuple]:
        return query(url, f"SELECT {', '.join(columns)}, store_id FROM {table} ORDER BY 1, 2, store_id, 3")

    assert rows("report_sales", "granularity", "period_start", "orders") == [
        ("hour", one_store, 2, ""), ("hour", one_store, 2, "loja-a"), ("hour", two_stores, 2, ""),
        ("minute", one_store, 2, ""), ("minute", one_store, 2, "loja-a")]
    dishes = rows("report_dishes", "granularity", "period_start", "dish")
    assert [d for d in dishes if d[3] == "loja-a"] == [
        (unit, one_store, dish, "loja-a") for unit in ("hour", "minute") for dish in ("Coxinha", "Suco")]
    assert len(dishes) == 10
    assert rows("report_customers", "granularity", "period_start", "customer_id") == [
        ("hour", one_store, 7, ""), ("hour", one_store, 7, "loja-a"), ("hour", two_stores, 7, ""),
        ("minute", one_store, 7, ""), ("minute", one_store, 7, "loja-a")]
    assert query(url, "SELECT periodo FROM relatorio_vendas") == [(one_store,)]
    assert query(url, "SELECT loja, periodo, total_vendas FROM relatorio_vendas_por_loja") == [
        ("loja-a", one_store, Decimal("30.00"))]


# ---- a store is known from its first stored order ---------------------------------------------


def test_a_store_is_known_as_soon_as_its_first_order_is_stored_before_any_report(
    worker: WorkerProcess, database_url: str
):
    worker.env["ORDER_SIMULATOR"] = "off"
    worker.start()
    now = datetime.now(UTC).replace(microsecond=0)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}
    reports_of = f"{worker.url}/reports?{urllib.parse.urlencode({**window, 'store': 'loja-nova'})}"
    status, body = get(reports_of)
    assert status == 400 and "no store 'loja-nova' has any order yet" in body["error"]

    assert post_orders(worker.url, [order(now - timedelta(seconds=30), "loja-nova", 0)]) == 202
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 1,
               message="the order was never stored")
    assert query(database_url, "SELECT count(*) FROM report_sales") == [(0,)]  # the job has not run
    assert query(database_url, "SELECT store_id FROM stores") == [("loja-nova",)]
    status, body = get(reports_of)
    assert status == 200 and body["store"] == "loja-nova" and body["reports"] == []
    assert get(f"{worker.url}/api/dashboard/stores") == (200, {"source": "stores", "chain": CHAIN_STORE,
                                                               "stores": ["loja-nova"]})
    status, summary = get(f"{worker.url}/api/dashboard/summary?store=loja-nova")
    assert status == 200, summary
    status, body = get(f"{worker.url}/api/dashboard/summary?store=loja-outra")
    assert status == 400 and "no store 'loja-outra' has any order yet" in body["error"]


def test_migration_031_knows_the_stores_of_the_orders_and_reports_stored_before(
    stack: ScratchStack
):
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    reports_job.save(url, [order(HOUR, "loja-a", 0), order(HOUR, "main", 1), order(HOUR, "loja-a", 2)])
    assert run_report_job(url)["exit_code"] == 0
    # As before migration 031, and with one store's orders gone since (its reports stay).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE stores")
        conn.execute("DELETE FROM schema_migrations WHERE version LIKE '031%'")
        conn.execute("DELETE FROM orders WHERE store_id = 'main'")
    assert any(m.startswith("031") for m in asyncio.run(Database(url).migrate()))
    assert query(url, "SELECT store_id FROM stores ORDER BY 1") == [("loja-a",), ("main",)]
