"""BASELINE, not product code: the naive consumer that the real worker is compared with.

This is the usual tutorial approach: read one message, validate it, INSERT it (one
statement for the order, one for its lines) and commit, then the next message. It is
kept only so that the benchmark can say how much the batched worker gains.
"""

from __future__ import annotations

import asyncio

import psycopg
from aiokafka import AIOKafkaConsumer

from restaurant_app.database import Database
from restaurant_app.kafka_security import PLAINTEXT, KafkaSecurity
from restaurant_app.models import Order
from restaurant_app.validation import parse_order

# The order's key first: order_keys keeps order_id unique across the day partitions (migration 006).
INSERT_ORDER = """
WITH key AS (
    INSERT INTO order_keys (order_id, created_at) VALUES (%s, %s)
    ON CONFLICT (order_id) DO NOTHING RETURNING order_id, created_at
)
INSERT INTO orders (order_id, created_at, customer_id, customer_name, channel, payment_method, total)
SELECT order_id, created_at, %s, %s, %s, %s, %s FROM key
"""

INSERT_ITEM = """
INSERT INTO order_items (order_id, line_no, dish, category, unit_price, quantity, order_created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (order_id, order_created_at, line_no) DO NOTHING
"""


async def store_one(conn: psycopg.AsyncConnection, order: Order) -> None:
    """One order in its own transaction: INSERT the order, INSERT its lines, COMMIT."""
    await conn.execute(INSERT_ORDER, (
        order.order_id, order.created_at, order.customer_id, order.customer_name,
        order.channel, order.payment_method, order.total,
    ))
    await conn.cursor().executemany(INSERT_ITEM, [
        (order.order_id, line_no, item.dish, item.category, item.unit_price, item.quantity,
         order.created_at)
        for line_no, item in enumerate(order.items, start=1)
    ])
    await conn.commit()


async def consume_naively(bootstrap_servers: str, topic: str, database_url: str,
                          count: int, group_id: str, security: KafkaSecurity) -> None:
    """Store the first ``count`` orders of ``topic`` one message and one commit at a time."""
    await Database(database_url).migrate()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, group_id=group_id,
        auto_offset_reset="earliest", **security.client_options(),
    )
    await consumer.start()
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            stored = 0
            async for message in consumer:
                await store_one(conn, parse_order(message.value))
                stored += 1
                if stored == count:
                    return
    finally:
        await consumer.stop()


def run_baseline(bootstrap_servers: str, topic: str, database_url: str,
                 count: int, group_id: str, security: KafkaSecurity = PLAINTEXT) -> None:
    asyncio.run(consume_naively(bootstrap_servers, topic, database_url, count, group_id, security))
