"""Where the persistence agent stores orders and rejections: the sink contract and its implementations.

Delivery guarantee of every sink: **at-least-once in, idempotent out.** The agent may hand a
sink the same batch more than once (Kafka redelivers what was not acknowledged); a sink
stores an order once per ``order_id`` and a rejection once per (topic, partition, offset),
so a redelivered batch makes no second row. ``save`` raises ``DatabaseUnavailable`` (the
backpressure signal, like Quix Streams' ``SinkBackpressureError``) when the store cannot be
reached: the agent then waits, retries the same batch and keeps its offsets uncommitted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

import psycopg

from restaurant_app.database import Database, DatabaseUnavailable, outage_as_unavailable
from restaurant_app.models import Order


@dataclass(frozen=True)
class Rejection:
    """A message that could not be accepted as an order, and where it came from."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    reason: str
    key: bytes | None = None


class OrderSink(Protocol):
    """Stores batches of orders and rejections; see the module's delivery guarantee."""

    async def ready(self) -> None:
        """Wait until the sink can store (schema applied, connections open)."""

    async def save(self, orders: Sequence[Order], rejections: Sequence[Rejection] = ()) -> int:
        """Store a batch atomically; return how many orders were new. Raise ``DatabaseUnavailable``
        to make the caller wait and try the same batch again."""


# The order's columns, said once: (column, SQL type). An order column is the Order field of the
# same name; an order line's columns are the order's key, its line number, then OrderItem fields.
ORDER_COLUMNS = (
    ("order_id", "uuid"), ("created_at", "timestamptz"), ("customer_id", "bigint"),
    ("customer_name", "text"), ("channel", "text"), ("payment_method", "text"), ("total", "numeric"),
)
ITEM_KEY_COLUMNS = (("order_id", "uuid"), ("line_no", "smallint"))
ITEM_FIELD_COLUMNS = (
    ("dish", "text"), ("category", "text"), ("unit_price", "numeric"), ("quantity", "integer"),
)
ITEM_COLUMNS = ITEM_KEY_COLUMNS + ITEM_FIELD_COLUMNS

STAGED_ORDERS = "staged_orders"
STAGED_ITEMS = "staged_order_items"

_order_values = attrgetter(*(name for name, _ in ORDER_COLUMNS))
_item_values = attrgetter(*(name for name, _ in ITEM_FIELD_COLUMNS))


def _names(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in columns)


def _staging_table(table: str, columns: Sequence[tuple[str, str]]) -> str:
    typed = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
    return f"CREATE TEMP TABLE {table} ({typed}) ON COMMIT DELETE ROWS"


def _move(table: str, staged: str, columns: Sequence[tuple[str, str]], key: str) -> str:
    return (f"INSERT INTO {table} ({_names(columns)}) SELECT {_names(columns)} FROM {staged}"
            f" ON CONFLICT ({key}) DO NOTHING")


# A batch is streamed with COPY into session-local staging tables, then moved with one
# INSERT ... SELECT per table. COPY encodes rows in C; binding each column as an array
# parameter did it in Python, at about three times the worker's CPU per order.
STAGING_TABLES = (_staging_table(STAGED_ORDERS, ORDER_COLUMNS), _staging_table(STAGED_ITEMS, ITEM_COLUMNS))
COPY_ORDERS = f"COPY {STAGED_ORDERS} ({_names(ORDER_COLUMNS)}) FROM STDIN"
COPY_ITEMS = f"COPY {STAGED_ITEMS} ({_names(ITEM_COLUMNS)}) FROM STDIN"
INSERT_ORDERS = _move("orders", STAGED_ORDERS, ORDER_COLUMNS, "order_id")
INSERT_ITEMS = _move("order_items", STAGED_ITEMS, ITEM_COLUMNS, "order_id, line_no")

INSERT_REJECTIONS = """
INSERT INTO rejected_orders (topic, kafka_partition, kafka_offset, raw, reason)
SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::bytea[], %s::text[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
"""


def order_rows(orders: Sequence[Order]) -> Iterator[tuple[Any, ...]]:
    """The ``orders`` rows of a batch, in ``ORDER_COLUMNS`` order."""
    return map(_order_values, orders)


def item_rows(orders: Sequence[Order]) -> Iterator[tuple[Any, ...]]:
    """The ``order_items`` rows of a batch, in ``ITEM_COLUMNS`` order."""
    for order in orders:
        for line_no, item in enumerate(order.items, start=1):
            yield (order.order_id, line_no, *_item_values(item))


def _rejection_columns(rejections: Sequence[Rejection]) -> list[list[Any]]:
    return [
        [r.topic for r in rejections],
        [r.partition for r in rejections],
        [r.offset for r in rejections],
        [r.raw for r in rejections],
        [r.reason for r in rejections],
    ]


async def create_staging_tables(conn: psycopg.AsyncConnection) -> None:
    """Each pooled connection creates its session-local staging tables once, when opened."""
    for statement in STAGING_TABLES:
        await conn.execute(statement)
    await conn.commit()


async def _copy(conn: psycopg.AsyncConnection, statement: str, rows: Iterator[tuple[Any, ...]]) -> None:
    async with conn.cursor().copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


class PostgresOrderSink:
    """An ``OrderSink`` on the worker's PostgreSQL: one transaction per batch."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.prepare_connections(create_staging_tables)

    async def ready(self) -> None:
        await self.database.ready()

    async def save(self, orders: Sequence[Order], rejections: Sequence[Rejection] = ()) -> int:
        """Store orders and rejections in one transaction; return how many orders were new."""
        with outage_as_unavailable():
            async with self.database.pool.connection() as conn, conn.transaction():
                inserted = 0
                if orders:
                    await _copy(conn, COPY_ORDERS, order_rows(orders))
                    await _copy(conn, COPY_ITEMS, item_rows(orders))
                    inserted = (await conn.execute(INSERT_ORDERS)).rowcount
                    await conn.execute(INSERT_ITEMS)
                if rejections:
                    await conn.execute(INSERT_REJECTIONS, _rejection_columns(rejections))
                return inserted


class InMemoryOrderSink:
    """An ``OrderSink`` in memory, for tests and demos; ``outages`` makes its next saves fail."""

    def __init__(self, outages: int = 0) -> None:
        self.orders: dict[str, Order] = {}
        self.rejections: list[Rejection] = []
        self.saves = 0
        self.outages = outages

    async def ready(self) -> None:
        return None

    async def save(self, orders: Sequence[Order], rejections: Sequence[Rejection] = ()) -> int:
        if self.outages:
            self.outages -= 1
            raise DatabaseUnavailable("connection refused")
        self.saves += 1
        new = [o for o in orders if o.order_id not in self.orders]
        self.orders.update((o.order_id, o) for o in new)
        known = {(r.topic, r.partition, r.offset) for r in self.rejections}
        self.rejections += [r for r in rejections if (r.topic, r.partition, r.offset) not in known]
        return len(new)


async def save_orders(database_url: str, orders: Sequence[Order]) -> int:
    """Store ``orders`` in one batch through the real save path, on a pool of its own (tools, tests)."""
    database = Database(database_url, max_size=1)
    sink = PostgresOrderSink(database)
    await sink.ready()
    try:
        return await sink.save(orders)
    finally:
        await database.close()
