"""Anonymous orders through the real worker and the real report job: orders, not customers."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.menu import MENU
from restaurant_app.models import Order, OrderItem
from tests.services import produce, query, run_report_job, wait_until

pytestmark = pytest.mark.integration

HOUR = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
MIXED_MINUTE = HOUR + timedelta(minutes=10)
ANONYMOUS_MINUTE = HOUR + timedelta(minutes=20)

SALES = """
SELECT orders, unique_customers, gross_revenue, identified_revenue, avg_spend_per_customer
FROM report_sales WHERE granularity = %s AND period_start = %s AND store_id = ''
"""


def order(at: datetime, customer: int | None, dish_index: int, quantity: int) -> Order:
    dish = MENU[dish_index]
    items = [OrderItem(dish=dish.name, category=dish.category, unit_price=dish.price, quantity=quantity)]
    return Order(order_id=str(uuid.uuid4()), created_at=at, customer_id=customer,
                 customer_name=None if customer is None else f"Cliente {customer}",
                 channel="takeaway", payment_method="cash", items=items, total=dish.price * quantity)


def left_out(order: Order) -> bytes:
    """``order`` as an older point of sale writes an anonymous one: no customer keys at all."""
    payload = json.loads(order.dumps())
    del payload["customer_id"], payload["customer_name"]
    return json.dumps(payload).encode()


def test_anonymous_orders_count_as_orders_but_not_as_customers(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    identified = [order(MIXED_MINUTE + timedelta(seconds=s), c, s, 1 + s)
                  for s, c in enumerate([501, 502, 501])]
    anonymous = [order(MIXED_MINUTE + timedelta(seconds=10 + s), None, 3 + s, 2) for s in range(3)]
    only_anonymous = [order(ANONYMOUS_MINUTE + timedelta(seconds=s), None, s, 1) for s in range(2)]
    everything = identified + anonymous + only_anonymous
    messages = [o.dumps() for o in identified + anonymous[:2] + only_anonymous[:1]]
    messages += [left_out(anonymous[2]), left_out(only_anonymous[1])]
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, m) for m in messages])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == len(everything),
               message="the orders never arrived")
    assert query(database_url, "SELECT count(*) FROM orders WHERE customer_id IS NULL")[0][0] == 5
    assert query(database_url, "SELECT count(*) FROM rejected_orders")[0][0] == 0

    result = run_report_job(database_url)
    assert result["exit_code"] == 0, result

    mixed = identified + anonymous
    spent = sum((o.total for o in identified), Decimal(0))
    assert query(database_url, SALES, ("minute", MIXED_MINUTE)) == [(
        len(mixed), 2, sum((o.total for o in mixed), Decimal(0)), spent, round(spent / 2, 2))]
    only = sum((o.total for o in only_anonymous), Decimal(0))
    assert query(database_url, SALES, ("minute", ANONYMOUS_MINUTE)) == [(2, 0, only, Decimal(0), None)]
    total = sum((o.total for o in everything), Decimal(0))
    assert query(database_url, SALES, ("hour", HOUR)) == [
        (len(everything), 2, total, spent, round(spent / 2, 2))]
    # "Ticket médio" is revenue per order everywhere (migration 013); spend per customer has
    # no customers to divide by in a minute of anonymous orders.
    assert query(database_url, "SELECT ticket_medio, gasto_medio_por_cliente FROM relatorio_vendas"
                 " WHERE periodo = %s", (ANONYMOUS_MINUTE,)) == [(round(only / 2, 2), None)]
