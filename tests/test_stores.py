"""Stores of a chain through the real worker and the real report job: stored, and revenue by store."""

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.menu import MENU
from restaurant_app.models import Order, OrderItem
from tests.services import get, produce, query, run_report_job, wait_until

pytestmark = pytest.mark.integration

HOUR = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
BY_STORE = "SELECT revenue_by_store FROM report_sales WHERE granularity = %s AND period_start = %s"


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
        database_url, "SELECT gross_revenue FROM report_sales WHERE granularity = 'hour'")[0][0]

    status, body = get(f"{worker.url}/reports/latest")
    assert status == 200
    assert as_amounts(body["hour"]["revenue_by_store"]) == revenue_by_store(first + later)
