"""Orders published to the real Kafka broker end up, intact, in the real PostgreSQL."""

import json
from decimal import Decimal

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.traffic import OrderGenerator
from tests.services import consume_all, produce, query, wait_until

pytestmark = pytest.mark.integration


def count_orders(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM orders")[0][0]


def test_orders_arrive_in_postgres_with_every_field(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
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


def test_the_seed_view_pedidos_has_one_row_per_item(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    order = OrderGenerator(seed=3).order()
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, order.dumps())])
    wait_until(lambda: count_orders(database_url) == 1)

    rows = query(database_url, "SELECT nome_prato, preco, quantidade, cliente_id FROM pedidos")
    assert sorted(rows) == sorted(
        (i.dish, i.unit_price, i.quantity, order.customer_id) for i in order.items
    )
    assert sum(Decimal(r[1]) * r[2] for r in rows) == Decimal(json.loads(order.dumps())["total"])


def test_the_generator_places_orders_that_reach_postgres(worker: WorkerProcess, database_url: str):
    worker.env.update(ORDER_INTERVAL_SECONDS="0.5", ORDERS_PER_TICK="2", GENERATOR_SEED="5")
    worker.start()
    wait_until(lambda: count_orders(database_url) >= 4, message="the generator's orders never arrived")
    assert query(database_url, "SELECT count(*) FROM rejected_orders")[0][0] == 0


def test_a_batch_is_stored_once_nothing_more_is_waiting_not_when_its_timer_ends(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    """With the batch timer at an hour, each quiet moment's orders are still stored at once."""
    worker.env["BATCH_WITHIN_SECONDS"] = "3600"
    worker.start()
    generator = OrderGenerator(seed=11)
    stored = 0
    for count in (1, 3):  # one order alone, then three: two batches, neither full
        orders = [generator.order() for _ in range(count)]
        produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"],
                [(o.store_id.encode(), o.dumps()) for o in orders])
        stored += count
        wait_until(lambda n=stored: count_orders(database_url) == n, timeout=60,
                   message="the orders waited for the batch timer (an hour)")


def test_bad_messages_go_to_the_dead_letter_topic_and_table(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    good = OrderGenerator(seed=8).orders_for_tick(base=3)
    bad = [b"{broken", b'{"order_id": "1"}', b"\x00\x01binary"]
    worker.start()
    topic = worker.env["ORDERS_TOPIC"]
    messages = [(b"bad-0", bad[0]), (None, good[0].dumps()), (b"bad-1", bad[1]), (b"bad-2", bad[2])]
    produce(stack.kafka.bootstrap_servers, topic, messages)
    produce(stack.kafka.bootstrap_servers, topic, [(None, o.dumps()) for o in good[1:]])

    wait_until(lambda: count_orders(database_url) == len(good), message="good orders never arrived")
    rejected = wait_until(lambda: query(
        database_url,
        "SELECT topic, kafka_partition, kafka_offset, raw, reason FROM rejected_orders ORDER BY id",
    ) if count_rejected(database_url) == 3 else None)
    assert sorted(bytes(r[3]) for r in rejected) == sorted(bad)
    assert {r[0] for r in rejected} == {topic}
    assert all(r[4] for r in rejected)

    dead = consume_all(stack.kafka.bootstrap_servers, worker.env["DEAD_LETTER_TOPIC"], expected=3)
    assert sorted(m.value for m in dead) == sorted(bad)
    assert sorted(m.key for m in dead) == [b"bad-0", b"bad-1", b"bad-2"]
    headers = [dict(m.headers) for m in dead]
    assert {h["__connect.errors.topic"] for h in headers} == {topic.encode()}
    reasons = sorted(h["__connect.errors.exception.message"].decode() for h in headers)
    assert reasons == sorted(r[4] for r in rejected)
    assert {h["__connect.errors.exception.class.name"] for h in headers} == {b"InvalidOrder"}
    positions = {(int(h["__connect.errors.partition"]), int(h["__connect.errors.offset"])) for h in headers}
    assert positions == {(r[1], r[2]) for r in rejected}
    waiting = "SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NULL"
    assert wait_until(lambda: query(database_url, waiting) == [(0,)])


def count_rejected(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM rejected_orders")[0][0]


def test_an_order_delivered_twice_is_stored_once(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    orders = OrderGenerator(seed=9).orders_for_tick(base=5)
    worker.start()
    messages = [(None, o.dumps()) for o in orders]
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], messages + messages)
    wait_until(lambda: count_orders(database_url) == len(orders))
    worker.wait_for_log("already there", timeout=30)
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], messages[:1])
    worker.wait_for_log("(1 already there", timeout=30)
    assert count_orders(database_url) == len(orders)
    assert count_items(database_url) == sum(len(o.items) for o in orders)


def count_items(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM order_items")[0][0]
