"""Where the persistence agent stores orders and rejections: the sink contract and its implementations.

Delivery guarantee of every sink: **at-least-once in, idempotent and conflict-checked out.**
The agent may hand a sink the same batch more than once (Kafka redelivers what was not
acknowledged). A sink stores an order once per ``order_id``: an exact redelivery makes no new
row, and a *different* order under a stored ``order_id`` is never merged into it but recorded
as a rejection. A rejection is recorded once per (topic, partition, offset).

A sink signals two kinds of trouble with typed errors, as Quix Streams' sinks do:
``DatabaseUnavailable`` (the store cannot be reached: wait, then try the same batch again) and
``RowsRefused`` (the store refused what some row holds: split the batch to find the row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import msgspec
import psycopg

from restaurant_app.database import Database, DatabaseUnavailable, outage_as_unavailable
from restaurant_app.errors import PipelineError
from restaurant_app.events import EventRefused, EventTarget, judged, same_event
from restaurant_app.models import Order, OrderEvent

LONGEST_DATABASE_REASON = 200


class Source(msgspec.Struct, frozen=True):
    """Where a message came from, and the message as it came."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


class Accepted(msgspec.Struct, frozen=True):
    """A message that is a valid order."""

    order: Order
    source: Source


class AcceptedEvent(msgspec.Struct, frozen=True):
    """A message that is a valid cancellation or refund."""

    event: OrderEvent
    source: Source


class RejectionKind(StrEnum):
    """A rejection's class of error: the dead letter's exception header and the metric's label."""

    INVALID_ORDER = "InvalidOrder"  # not a valid order
    CONFLICTING_DUPLICATE = "ConflictingDuplicate"  # another order under an order_id already stored
    REFUSED_BY_DATABASE = "RefusedByDatabase"  # PostgreSQL refused the row
    UNREADABLE_RECORD = "UnreadableRecord"  # Kafka's record itself could not be decoded
    UNKNOWN_ORDER = "UnknownOrder"  # a cancellation or refund of an order that is not stored
    EVENT_REFUSED = "EventRefused"  # a cancellation or refund its order does not allow


class Rejection(msgspec.Struct, frozen=True):
    """A message that is not an acceptable order, and why; ``kind`` names the class of error."""

    source: Source
    reason: str
    kind: RejectionKind = RejectionKind.INVALID_ORDER


@dataclass
class Saved:
    """What a save did: how many orders were new, every rejection it recorded (those it was given
    and the conflicting duplicates it found), and which of them are not yet dead-lettered."""

    new_orders: int
    rejections: list[Rejection] = field(default_factory=list)
    not_dead_lettered: list[Rejection] = field(default_factory=list)
    new_events: int = 0
    """Cancellations and refunds stored (``OrderSink.save_events``)."""

    def __add__(self, other: Saved) -> Saved:
        return Saved(self.new_orders + other.new_orders, self.rejections + other.rejections,
                     self.not_dead_lettered + other.not_dead_lettered, self.new_events + other.new_events)


class RowsRefused(PipelineError):
    """PostgreSQL refused a row of the batch for what it holds (not an outage); nothing was stored."""


class OrderSink(Protocol):
    """Stores batches of orders and rejections; see the module's delivery guarantee."""

    async def ready(self) -> None:
        """Wait until the sink can store (schema applied, connections open)."""

    async def save(self, orders: Sequence[Accepted], rejections: Sequence[Rejection] = ()) -> Saved:
        """Store a batch atomically. Raise ``DatabaseUnavailable`` to make the caller wait and try
        the same batch again, ``RowsRefused`` to make it split the batch."""

    async def save_events(self, events: Sequence[AcceptedEvent]) -> Saved:
        """Store cancellations and refunds in one transaction, each once by its ``event_id``, in order;
        one whose order is not stored or does not allow it is recorded as a rejection."""

    async def mark_dead_lettered(self, rejections: Sequence[Rejection]) -> None:
        """Record that these rejections are on the dead-letter topic."""


# The order's columns, said once: (column, SQL type). An order column is the Order field of the
# same name (``payments``, the last, as a JSON array, NULL for version 1); an order line's columns
# are the order's key, its line number, then OrderItem fields.
ORDER_COLUMNS = (
    ("order_id", "uuid"), ("created_at", "timestamptz"), ("customer_id", "bigint"),
    ("customer_name", "text"), ("channel", "text"), ("payment_method", "text"), ("total", "numeric"),
    ("store_id", "text"), ("schema_version", "smallint"), ("discount", "numeric"),
    ("service_charge", "numeric"), ("service_charge_is_revenue", "boolean"), ("delivery_fee", "numeric"),
    ("tip", "numeric"), ("payments", "jsonb"),
)
ITEM_KEY_COLUMNS = (("order_id", "uuid"), ("line_no", "smallint"))
ITEM_FIELD_COLUMNS = (
    ("dish", "text"), ("category", "text"), ("unit_price", "numeric"), ("quantity", "integer"),
    ("discount", "numeric"),
)
ITEM_COLUMNS = ITEM_KEY_COLUMNS + ITEM_FIELD_COLUMNS

STAGED_ORDERS = "staged_orders"
STAGED_ITEMS = "staged_order_items"

_payments = msgspec.json.Encoder()


def _names(columns: Sequence[tuple[str, str]], prefix: str = "") -> str:
    return ", ".join(prefix + name for name, _ in columns)


def _staging_table(table: str, columns: Sequence[tuple[str, str]]) -> str:
    typed = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
    return f"CREATE TEMP TABLE {table} ({typed}) ON COMMIT DELETE ROWS"


def _stored_lines(alias: str) -> str:
    """A stored order's lines as one comparable array, read from its own day's partition by key."""
    return (f"(SELECT array_agg(ROW({_names(ITEM_FIELD_COLUMNS, 'l.')}) ORDER BY l.line_no)"
            f" FROM order_items l WHERE l.order_id = {alias}.order_id"
            f" AND l.order_created_at = {alias}.created_at)")


# A batch is streamed with COPY into session-local staging tables, then moved with one
# statement. Binding each column as an array parameter cost about three times the worker's CPU per
# order. psycopg's COPY formatter (``write_row``) found and ran a dumper for every value, 12 µs per
# order, 22% of the worker's CPU; its binary format costs more still. The sink writes COPY's text
# itself instead, one block per table (``orders_block``, ``items_block``: a format string per row,
# text escaped only in a batch that needs it, one ``write``): ``save`` went from 15.5 to 9.0 CPU µs
# per order (``python -m bench.sink``, medians). Lines are inserted only for orders this statement
# inserted, so a conflicting version's lines are never merged into a stored order.
# orders and order_items are partitioned by day (migration 006), so order_id is unique in
# order_keys: an order is inserted only if its key was new, and its lines carry its created_at
# (no row-by-row foreign key, migrations 027 and 029: this statement is what pins them). A new
# key has no order or line yet (deleting a key deletes them), and a round holds one version of an
# order: orders and lines need no ON CONFLICT, whose speculative insertion cost PostgreSQL about
# 6 µs per order (a row already there would be refused, RowsRefused, never merged). A new
# order's store is added to stores (migration 031), in one order so that two workers' first
# orders of the same two stores do not deadlock.
STAGING_TABLES = (_staging_table(STAGED_ORDERS, ORDER_COLUMNS), _staging_table(STAGED_ITEMS, ITEM_COLUMNS))
COPY_ORDERS = f"COPY {STAGED_ORDERS} ({_names(ORDER_COLUMNS)}) FROM STDIN"
COPY_ITEMS = f"COPY {STAGED_ITEMS} ({_names(ITEM_COLUMNS)}) FROM STDIN"
INSERT_ORDERS_AND_LINES = f"""
WITH keys AS (
    INSERT INTO order_keys (order_id, created_at) SELECT order_id, created_at FROM {STAGED_ORDERS}
    ON CONFLICT (order_id) DO NOTHING RETURNING order_id, created_at
), new AS (
    INSERT INTO orders ({_names(ORDER_COLUMNS)})
    SELECT {_names(ORDER_COLUMNS, 's.')} FROM {STAGED_ORDERS} s JOIN keys USING (order_id, created_at)
    RETURNING order_id, created_at, store_id
), stores AS (
    INSERT INTO stores (store_id) SELECT DISTINCT store_id FROM new ORDER BY store_id
    ON CONFLICT (store_id) DO NOTHING
), lines AS (
    INSERT INTO order_items ({_names(ITEM_COLUMNS)}, order_created_at)
    SELECT {_names(ITEM_COLUMNS, 's.')}, new.created_at FROM {STAGED_ITEMS} s JOIN new USING (order_id)
)
SELECT count(*) FROM new
"""

# Staged orders whose id is stored with other content (another created_at included): conflicting
# versions, not redeliveries. The key gives the stored order's day, so one partition is read.
# Staged lines are grouped once (a hash join), not looked up per order: the staging tables have
# no index, and a redelivered batch of 5,000 orders made that quadratic.
CONFLICTS = f"""
WITH staged_lines AS (
    SELECT order_id, array_agg(ROW({_names(ITEM_FIELD_COLUMNS)}) ORDER BY line_no) AS lines
    FROM {STAGED_ITEMS} GROUP BY order_id
)
SELECT s.order_id::text FROM {STAGED_ORDERS} s JOIN order_keys k USING (order_id)
JOIN orders o ON o.order_id = k.order_id AND o.created_at = k.created_at
LEFT JOIN staged_lines sl ON sl.order_id = s.order_id
WHERE ({_names(ORDER_COLUMNS[1:], 's.')}) IS DISTINCT FROM ({_names(ORDER_COLUMNS[1:], 'o.')})
   OR sl.lines IS DISTINCT FROM {_stored_lines('o')}
"""

CLEAR_STAGING = f"TRUNCATE {STAGED_ORDERS}, {STAGED_ITEMS}"

STORED_EVENT = """
SELECT kind, order_id::text, created_at, reason, amount, lines FROM order_events WHERE event_id = %s
"""
# The order's key row is locked, so that two events of one order are judged one after the other.
EVENT_TARGET = """
SELECT o.created_at, o.total, o.store_id,
       CASE WHEN o.service_charge_is_revenue THEN 0 ELSE o.service_charge END,
       (SELECT count(*) FROM order_items i
        WHERE i.order_id = o.order_id AND i.order_created_at = o.created_at),
       e.amount, e.revenue, e.cancelled_by
FROM order_keys k
CROSS JOIN LATERAL (
    SELECT coalesce(sum(amount), 0) AS amount, coalesce(sum(revenue), 0) AS revenue,
           min(event_id::text) FILTER (WHERE kind = 'cancellation') AS cancelled_by
    FROM order_events WHERE order_id = k.order_id
) e JOIN orders o ON o.order_id = k.order_id AND o.created_at = k.created_at
WHERE k.order_id = %s
FOR UPDATE OF k
"""
INSERT_EVENT = """
INSERT INTO order_events (event_id, kind, order_id, order_created_at, store_id, created_at, amount, revenue,
                          reason, lines)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

_BATCH_POSITIONS = (
    "unnest(%s::text[], %s::integer[], %s::bigint[]) AS b (topic, kafka_partition, kafka_offset)"
)

# One row per statement (a pipeline of them), so no message carries more than one rejection.
INSERT_REJECTION = """
INSERT INTO rejected_orders
    (topic, kafka_partition, kafka_offset, raw, raw_length, reason, message_key, header_names, header_values)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
"""

NOT_DEAD_LETTERED = f"""
SELECT r.topic, r.kafka_partition, r.kafka_offset FROM {_BATCH_POSITIONS}
JOIN rejected_orders r USING (topic, kafka_partition, kafka_offset)
WHERE r.dead_lettered_at IS NULL
"""

MARK_DEAD_LETTERED = f"""
UPDATE rejected_orders r SET dead_lettered_at = now() FROM {_BATCH_POSITIONS}
WHERE (r.topic, r.kafka_partition, r.kafka_offset) = (b.topic, b.kafka_partition, b.kafka_offset)
"""


# COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html): a line per row, its
# fields between tabs, NULL as \N; in a value, a backslash, a tab, a newline or a carriage return
# is escaped with a backslash. Numbers are written by ``str``, as psycopg's text dumpers write them
# (but a NaN, which no accepted order holds), booleans as t and f, timestamps by ``copy_timestamp``.
COPY_NULL = "\\N"
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NUL_REFUSED = "PostgreSQL text fields cannot contain NUL (0x00) bytes"
"""psycopg's words for a NUL character in text, which PostgreSQL cannot store."""

_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))

TextWriter = Callable[[str], str]


def copy_escaped(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    return value.translate(COPY_ESCAPES)


def copy_timestamp(moment: datetime) -> str:
    """``moment`` as COPY text: as psycopg writes it (``str``), or, in UTC from the year 1000, the same
    instant in a third of the time (``str`` of an aware datetime is slow)."""
    if moment.tzinfo is not UTC or moment.year < 1000:
        return str(moment)
    two = _TWO_DIGITS
    return (f"{moment.year!s}-{two[moment.month]}-{two[moment.day]} {two[moment.hour]}:"
            f"{two[moment.minute]}:{two[moment.second]}.{moment.microsecond:06d}+00")


def _order_lines(orders: Sequence[Order], text: TextWriter) -> str:
    """The ``orders`` rows as lines of COPY text, in ``ORDER_COLUMNS`` order; ``text`` writes a text value."""
    return "".join([
        f"{text(o.order_id)}\t{copy_timestamp(o.created_at)}\t"
        f"{COPY_NULL if o.customer_id is None else str(o.customer_id)}\t"
        f"{COPY_NULL if o.customer_name is None else text(o.customer_name)}\t{text(o.channel)}\t"
        f"{text(o.payment_method)}\t{o.total!s}\t{text(o.store_id)}\t{o.schema_version!s}\t"
        f"{o.discount!s}\t{o.service_charge!s}\t{'t' if o.service_charge_is_revenue else 'f'}\t"
        f"{o.delivery_fee!s}\t{o.tip!s}\t"
        f"{text(_payments.encode(o.payments).decode()) if o.payments else COPY_NULL}\n"
        for o in orders])


def _item_lines(orders: Sequence[Order], text: TextWriter) -> str:
    """The ``order_items`` rows as lines of COPY text, in ``ITEM_COLUMNS`` order."""
    return "".join([f"{text(order.order_id)}\t{line_no!s}\t{text(item.dish)}\t{text(item.category)}\t"
                    f"{item.unit_price!s}\t{item.quantity!s}\t{item.discount!s}\n"
                    for order in orders for line_no, item in enumerate(order.items, start=1)])


def copy_block(orders: Sequence[Order], lines: Callable[[Sequence[Order], TextWriter], str], rows: int,
               fields: int, nulls: int) -> str:
    """The ``rows`` rows of ``fields`` fields, ``nulls`` of them NULL, that ``lines`` writes for
    ``orders``, as one block of COPY text.

    The lines are written with text as it is, then counted: a value holding a tab, a newline, a
    backslash or a carriage return adds one, and only then are they written again, escaped.
    """
    block = lines(orders, str)
    if (block.count("\t") != rows * (fields - 1) or block.count("\n") != rows
            or block.count("\\") != nulls or "\r" in block):
        block = lines(orders, copy_escaped)
    if "\x00" in block:
        raise psycopg.DataError(NUL_REFUSED)
    return block


def orders_block(orders: Sequence[Order]) -> str:
    """The ``orders`` rows of a batch as one block of COPY text."""
    nulls = sum([(o.customer_id is None) + (o.customer_name is None) + (not o.payments) for o in orders])
    return copy_block(orders, _order_lines, len(orders), len(ORDER_COLUMNS), nulls)


def items_block(orders: Sequence[Order]) -> str:
    """The ``order_items`` rows of a batch as one block of COPY text."""
    rows = sum([len(order.items) for order in orders])
    return copy_block(orders, _item_lines, rows, len(ITEM_COLUMNS), 0)


def versions(orders: Sequence[Accepted]) -> list[list[Accepted]]:
    """The batch in rounds: the first version of each order, then any other version of it, and so on.

    Each round is compared with what is stored once the rounds before it are, so whichever
    version was stored first stays, and every other version is a conflicting duplicate.
    """
    rounds: list[list[Accepted]] = []
    seen: dict[str, int] = {}
    for accepted in orders:
        number = seen.get(accepted.order.order_id, 0)
        seen[accepted.order.order_id] = number + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(accepted)
    return rounds


def conflicting_duplicate(accepted: Accepted) -> Rejection:
    reason = f"conflicting duplicate of order {accepted.order.order_id}: same order_id, different content"
    return Rejection(accepted.source, reason, RejectionKind.CONFLICTING_DUPLICATE)


def refused_reason(exc: psycopg.Error) -> str:
    """A database's refusal in one short line: its SQLSTATE and message, never the row's whole value."""
    message = (exc.diag.message_primary if exc.diag else None) or str(exc) or type(exc).__name__
    text = " ".join(message.split())
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return f"PostgreSQL refused the order{state}: {text}"[:LONGEST_DATABASE_REASON]


def _positions(rejections: Sequence[Rejection]) -> list[list[Any]]:
    return [[r.source.topic for r in rejections], [r.source.partition for r in rejections],
            [r.source.offset for r in rejections]]


def _rejection_row(rejection: Rejection, raw_max_bytes: int | None = None) -> tuple[Any, ...]:
    """A rejection's ``rejected_orders`` row, in ``INSERT_REJECTION`` order; a value longer than
    ``raw_max_bytes`` is cut to it, with its full length in ``raw_length``."""
    source = rejection.source
    raw, length = source.value, None
    if raw_max_bytes is not None and len(raw) > raw_max_bytes:
        raw, length = raw[:raw_max_bytes], len(raw)
    names = [name.encode() for name, _ in source.headers]
    return (*source.position, raw, length, rejection.reason, source.key, names,
            [value for _, value in source.headers])


async def _store_event(conn: psycopg.AsyncConnection, accepted: AcceptedEvent) -> Rejection | bool:
    """Store one event: True if new, False if stored before, or its rejection."""
    event, source = accepted.event, accepted.source
    stored = await (await conn.execute(STORED_EVENT, (event.event_id,))).fetchone()
    if stored is not None:
        if same_event(event, *stored):
            return False
        reason = f"conflicting duplicate of event {event.event_id}: same event_id, different content"
        return Rejection(source, reason, RejectionKind.CONFLICTING_DUPLICATE)
    row = await (await conn.execute(EVENT_TARGET, (event.order_id,))).fetchone()
    if row is None:
        reason = (f"no order {event.order_id} is stored: a {event.kind} must come after its order"
                  " (key both by the order's store)")
        return Rejection(source, reason, RejectionKind.UNKNOWN_ORDER)
    target = EventTarget(*row)
    try:
        amount, revenue = judged(event, target)
    except EventRefused as exc:
        return Rejection(source, str(exc), RejectionKind.EVENT_REFUSED)
    await conn.execute(INSERT_EVENT, (event.event_id, event.kind, event.order_id, target.created_at,
                                      target.store_id, event.created_at, amount, revenue, event.reason,
                                      list(event.lines)))
    return True


async def create_staging_tables(conn: psycopg.AsyncConnection) -> None:
    """Each pooled connection creates its session-local staging tables once, when opened."""
    for statement in STAGING_TABLES:
        await conn.execute(statement)
    await conn.commit()


async def _copy(conn: psycopg.AsyncConnection, statement: str, block: str) -> None:
    """COPY a block of COPY text; psycopg encodes it in the connection's encoding and sends it in chunks."""
    async with conn.cursor().copy(statement) as copy:
        await copy.write(block)


class PostgresOrderSink:
    """An ``OrderSink`` on the worker's PostgreSQL: one transaction per batch."""

    def __init__(self, database: Database, raw_max_bytes: int | None = None) -> None:
        self.database = database
        self.raw_max_bytes = raw_max_bytes
        """A rejected value longer than this is kept cut to it, with its full length."""
        database.prepare_connections(create_staging_tables)

    async def ready(self) -> None:
        await self.database.ready()

    async def save(self, orders: Sequence[Accepted], rejections: Sequence[Rejection] = ()) -> Saved:
        """Store orders and rejections in one transaction."""
        try:
            with outage_as_unavailable():
                async with self.database.pool.connection() as conn, conn.transaction():
                    return await self._save(conn, orders, rejections)
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
            reason = refused_reason(exc) if isinstance(exc, psycopg.Error) else f"cannot encode it: {exc}"
            raise RowsRefused(reason) from exc

    async def _save(self, conn: psycopg.AsyncConnection, orders: Sequence[Accepted],
                    rejections: Sequence[Rejection]) -> Saved:
        saved = Saved(0, list(rejections))
        for number, version in enumerate(versions(orders)):
            if number:  # empty the round before; after the last, the commit does (ON COMMIT DELETE ROWS)
                await conn.execute(CLEAR_STAGING)
            round_orders = [a.order for a in version]
            await _copy(conn, COPY_ORDERS, orders_block(round_orders))
            await _copy(conn, COPY_ITEMS, items_block(round_orders))
            new_orders = (await (await conn.execute(INSERT_ORDERS_AND_LINES)).fetchone())[0]
            if new_orders < len(version):
                saved.rejections += await self._conflicts(conn, version)
            saved.new_orders += new_orders
        await self._record(conn, saved)
        return saved

    async def _record(self, conn: psycopg.AsyncConnection, saved: Saved) -> None:
        """Record the rejections of ``saved``, and note on it those not yet dead-lettered."""
        rejections = saved.rejections
        if rejections:
            rows = (_rejection_row(r, self.raw_max_bytes) for r in rejections)
            await conn.cursor().executemany(INSERT_REJECTION, rows)
            pending = await conn.execute(NOT_DEAD_LETTERED, _positions(rejections))
            waiting = {tuple(row) for row in await pending.fetchall()}
            saved.not_dead_lettered = [r for r in rejections if r.source.position in waiting]

    async def save_events(self, events: Sequence[AcceptedEvent]) -> Saved:
        """Judge and store each event against its stored order, in one transaction."""
        try:
            with outage_as_unavailable():
                async with self.database.pool.connection() as conn, conn.transaction():
                    saved = Saved(0)
                    for accepted in events:
                        outcome = await _store_event(conn, accepted)
                        if isinstance(outcome, Rejection):
                            saved.rejections.append(outcome)
                        else:
                            saved.new_events += outcome
                    await self._record(conn, saved)
                    return saved
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
            reason = refused_reason(exc) if isinstance(exc, psycopg.Error) else f"cannot encode it: {exc}"
            raise RowsRefused(reason) from exc

    async def _conflicts(self, conn: psycopg.AsyncConnection, orders: Sequence[Accepted]) -> list[Rejection]:
        found = {row[0] for row in await (await conn.execute(CONFLICTS)).fetchall()}
        return [conflicting_duplicate(a) for a in orders if a.order.order_id in found]

    async def mark_dead_lettered(self, rejections: Sequence[Rejection]) -> None:
        with outage_as_unavailable():
            async with self.database.pool.connection() as conn:
                await conn.execute(MARK_DEAD_LETTERED, _positions(rejections))


class InMemoryOrderSink:
    """An ``OrderSink`` in memory, for tests and demos; ``outages`` makes its next saves fail."""

    def __init__(self, outages: int = 0) -> None:
        self.orders: dict[str, Order] = {}
        self.events: dict[str, OrderEvent] = {}
        self.rejections: list[Rejection] = []
        self.dead_lettered: set[tuple[str, int, int]] = set()
        self.saves = 0
        self.outages = outages

    async def ready(self) -> None:
        return None

    async def save(self, orders: Sequence[Accepted], rejections: Sequence[Rejection] = ()) -> Saved:
        if self.outages:
            self.outages -= 1
            raise DatabaseUnavailable("connection refused")
        self.saves += 1
        new, conflicts = 0, []
        for accepted in orders:
            stored = self.orders.setdefault(accepted.order.order_id, accepted.order)
            new += stored is accepted.order
            if stored != accepted.order:
                conflicts.append(conflicting_duplicate(accepted))
        known = {r.source.position for r in self.rejections}
        batch = [*rejections, *conflicts]
        self.rejections += [r for r in batch if r.source.position not in known]
        waiting = [r for r in batch if r.source.position not in self.dead_lettered]
        return Saved(new, batch, waiting)

    async def save_events(self, events: Sequence[AcceptedEvent]) -> Saved:
        """Events of stored orders are kept (unjudged); others are rejections."""
        saved = Saved(0)
        for accepted in events:
            if accepted.event.order_id not in self.orders:
                unknown = Rejection(accepted.source, "unknown order", RejectionKind.UNKNOWN_ORDER)
                saved.rejections.append(unknown)
            elif accepted.event.event_id not in self.events:
                self.events[accepted.event.event_id] = accepted.event
                saved.new_events += 1
        self.rejections += saved.rejections
        saved.not_dead_lettered = list(saved.rejections)
        return saved

    async def mark_dead_lettered(self, rejections: Sequence[Rejection]) -> None:
        self.dead_lettered.update(r.source.position for r in rejections)


async def save_orders(database_url: str, orders: Sequence[Order]) -> int:
    """Store ``orders`` in one batch through the real save path, on a pool of its own (tools, tests)."""
    database = Database(database_url, max_size=1)
    sink = PostgresOrderSink(database)
    await sink.ready()
    try:
        sources = [Source("save_orders", 0, n, b"") for n in range(len(orders))]
        return (await sink.save([Accepted(o, s) for o, s in zip(orders, sources, strict=True)])).new_orders
    finally:
        await database.close()
