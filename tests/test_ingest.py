"""Orders published to the real Kafka broker end up, intact, in the real PostgreSQL."""

import json
from decimal import Decimal

import pytest

from restaurant_app.traffic import OrderGenerator
from tests.services import Stack, Worker, produce, query, wait_until

pytestmark = pytest.mark.integration


def count_orders(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM orders")[0][0]


def test_orders_arrive_in_postgres_with_every_field(stack: Stack, worker: Worker, database_url: str):
    orders = OrderGenerator(seed=7).orders_for_tick(base=40)
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"],
            [(o.order_id.encode(), o.dumps()) for o in orders])

    wait_until(lambda: count_orders(database_url) == len(orders), message="orders never arrived")

    stored = {
        str(row[0]): row for row in query(
            database_url,
            "SELECT order_id, created_at, customer_id, customer_name, channel, payment_method,"
            " total FROM orders",
        )
    }
    for order in orders:
        row = stored[order.order_id]
        assert row[1:] == (order.created_at, order.customer_id, order.customer_name,
                           order.channel, order.payment_method, order.total)
        items = query(
            database_url,
            "SELECT dish, category, unit_price, quantity FROM order_items"
            " WHERE order_id = %s ORDER BY line_no", (order.order_id,),
        )
        assert items == [(i.dish, i.category, i.unit_price, i.quantity) for i in order.items]


def test_the_seed_view_pedidos_has_one_row_per_item(stack: Stack, worker: Worker, database_url: str):
    order = OrderGenerator(seed=3).order()
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, order.dumps())])
    wait_until(lambda: count_orders(database_url) == 1)

    rows = query(database_url, "SELECT nome_prato, preco, quantidade, cliente_id FROM pedidos")
    assert sorted(rows) == sorted(
        (i.dish, i.unit_price, i.quantity, order.customer_id) for i in order.items
    )
    assert sum(Decimal(r[1]) * r[2] for r in rows) == Decimal(json.loads(order.dumps())["total"])
