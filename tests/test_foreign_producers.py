"""Orders published by clients we did not write (kcat, Kafka's Java console producer), with every codec."""

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.models import Order
from restaurant_app.traffic import OrderGenerator
from tests.foreign_clients import console_producer, kcat
from tests.services import query, wait_until

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def account(database_url: str) -> tuple[int, int, int]:
    """(orders, order lines, rejections) in the database."""
    return query(database_url, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),"
                               " (SELECT count(*) FROM rejected_orders)")[0]


def expected(orders: list[Order], rejections: int) -> tuple[int, int, int]:
    return len(orders), sum(len(o.items) for o in orders), rejections


def test_orders_from_kcat_and_the_java_console_producer_are_stored_once_with_every_codec(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    generator = OrderGenerator(seed=190)
    worker.start()
    topic = worker.env["ORDERS_TOPIC"]
    published: list[Order] = []
    for codec in CODECS:
        by_kcat, by_java = ([generator.order() for _ in range(25)] for _ in range(2))
        kcat(stack.bootstrap_servers, topic, [o.dumps() for o in by_kcat], "-z", codec)
        console_producer(stack.bootstrap_servers, topic, [o.dumps() for o in by_java], codec)
        published += by_kcat + by_java

    wait_until(lambda: account(database_url) == expected(published, 0), timeout=120,
               message=f"not every order was stored: {account(database_url)}")
    stored = {str(row[0]) for row in query(database_url, "SELECT order_id FROM orders")}
    assert stored == {o.order_id for o in published}
    worker.check_alive()
