"""The sink's own COPY text (``orders_block``, ``items_block``): every value an order can hold comes back.

Orders are drawn directly, not parsed, so that text holds what COPY's text format must escape
(tabs, newlines, carriage returns, backslashes, a lone ``\\N``) beside any other character
PostgreSQL can store, amounts are at their columns' limits, and ``created_at`` is in UTC (the
fast way ``copy_timestamp`` writes it) or at another offset. The blocks are read back here by
COPY's rules, and, against the real PostgreSQL, stored through the save path and read from the
tables. NUL and lone surrogates cannot be stored: the batch is refused, as it was with psycopg's
own COPY formatter.
"""

import asyncio
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from restaurant_app.database import Database
from restaurant_app.models import Order, OrderItem, Payment
from restaurant_app.order_sink import (
    COPY_NULL,
    ITEM_COLUMNS,
    NUL_REFUSED,
    ORDER_COLUMNS,
    Accepted,
    PostgresOrderSink,
    RowsRefused,
    Source,
    copy_escaped,
    copy_timestamp,
    items_block,
    orders_block,
)
from restaurant_app.traffic import OrderGenerator
from tests.services import item_rows, order_rows

COPY_SPECIALS = ["\t", "\n", "\r", "\r\n", "\\", "\\N", "\\.", "\\t", "\\\\", "\b", "\x0b", "\x0c"]
ODD_TEXT = ["\U0001f355", "\U0010ffff", "\U0001f468\u200d\U0001f469", "ç", "\u00a0", "\u2028", "\ufeff",
            "\x7f", "\x1f", "'", '"', ",", "(", ")", "{", "}", " "]
STORABLE = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
TEXT = st.one_of(
    st.text(STORABLE, max_size=20),
    st.lists(st.one_of(st.text(STORABLE, max_size=3), st.sampled_from(COPY_SPECIALS + ODD_TEXT)),
             max_size=8).map("".join),
)
NUMERIC_12_2 = Decimal("9999999999.99")
NUMERIC_10_2 = Decimal("99999999.99")


def amounts(maximum: Decimal, zero: bool = False) -> st.SearchStrategy[Decimal]:
    """Amounts of 2 places up to ``maximum`` (its column's limit), written in any of Decimal's forms."""
    least = Decimal(0) if zero else Decimal("0.01")
    return st.one_of(
        st.decimals(min_value=least, max_value=maximum, places=2),
        st.sampled_from([maximum, least, Decimal("1E+2"), Decimal("1.5"), Decimal("12"), Decimal("0.10")]),
    )


OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
MOMENTS = st.one_of(
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.datetimes(datetime(1000, 1, 2), datetime(9999, 12, 30), timezones=OFFSETS),
    st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.timezones()),
)
ITEMS = st.builds(OrderItem, dish=TEXT, category=TEXT, unit_price=amounts(NUMERIC_10_2),
                  quantity=st.integers(1, 2**31 - 1), discount=amounts(NUMERIC_12_2, zero=True))
PAYMENTS = st.lists(st.builds(Payment, method=TEXT, amount=amounts(NUMERIC_12_2)), max_size=3).map(tuple)
ORDERS = st.builds(
    Order, order_id=st.uuids().map(str), store_id=TEXT, created_at=MOMENTS,
    customer_id=st.none() | st.integers(1, 2**63 - 1), customer_name=st.none() | TEXT, channel=TEXT,
    payment_method=TEXT, items=st.lists(ITEMS, min_size=1, max_size=4), total=amounts(NUMERIC_12_2),
    schema_version=st.sampled_from([1, 2]), discount=amounts(NUMERIC_12_2, zero=True),
    service_charge=amounts(NUMERIC_12_2, zero=True), service_charge_is_revenue=st.booleans(),
    delivery_fee=amounts(NUMERIC_12_2, zero=True), tip=amounts(NUMERIC_12_2, zero=True), payments=PAYMENTS,
)
BATCHES = st.lists(ORDERS, min_size=1, max_size=6, unique_by=lambda order: order.order_id)


# --- COPY's text format, read as PostgreSQL reads it --------------------------------------

ESCAPED = re.compile(r"\\(.)", re.DOTALL)
UNESCAPED = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def copy_rows(block: str) -> list[list[str | None]]:
    """The rows of a block of COPY text: NULL as None, every other field unescaped."""
    assert block.endswith("\n") or not block
    assert "\r" not in block, "a carriage return ends a line of COPY text"
    return [[None if field == COPY_NULL else ESCAPED.sub(lambda m: UNESCAPED.get(m[1], m[1]), field)
             for field in line.split("\t")] for line in block.split("\n")[:-1]]


def read_as(field: str | None, value: object, sql_type: str) -> object:
    """``field`` read as a value of ``sql_type``, as PostgreSQL would, to compare with ``value``."""
    if field is None or sql_type in ("text", "uuid"):
        return field
    if sql_type == "boolean":
        return {"t": True, "f": False}[field]
    if sql_type == "timestamptz":
        return datetime.fromisoformat(field).astimezone(UTC)
    if sql_type == "jsonb":
        return msgspec.json.decode(field)
    return Decimal(field) if sql_type == "numeric" else int(field)


def expected_value(value: object, sql_type: str) -> object:
    """``value`` as read from its column: an instant in UTC (a zone's time in a gap or a fold equals no
    other zone's), JSON decoded."""
    if sql_type == "timestamptz":
        return value.astimezone(UTC)
    return msgspec.json.decode(value) if sql_type == "jsonb" and value is not None else value


def assert_block_holds(block: str, rows: list[tuple], columns: tuple[tuple[str, str], ...]) -> None:
    read = copy_rows(block)
    assert len(read) == len(rows)
    for fields, row in zip(read, rows, strict=True):
        assert len(fields) == len(columns)
        for field, value, (name, sql_type) in zip(fields, row, columns, strict=True):
            assert read_as(field, value, sql_type) == expected_value(value, sql_type), name


@settings(max_examples=100, deadline=None)
@given(BATCHES)
def test_every_value_of_a_batch_is_read_back_from_its_copy_text(orders: list[Order]):
    assert_block_holds(orders_block(orders), list(order_rows(orders)), ORDER_COLUMNS)
    assert_block_holds(items_block(orders), list(item_rows(orders)), ITEM_COLUMNS)


@given(TEXT)
def test_escaped_text_holds_no_separator_and_reads_back_as_it_was(text: str):
    escaped = copy_escaped(text)
    assert not {"\t", "\n", "\r"} & set(escaped)
    assert copy_rows(escaped + "\n") == [[text]]


@given(st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC) | OFFSETS))
def test_a_timestamp_is_the_same_instant_as_psycopg_s_text(moment: datetime):
    written = copy_timestamp(moment)
    assert datetime.fromisoformat(written).astimezone(UTC) == moment.astimezone(UTC)
    assert written == str(moment) or (moment.tzinfo is UTC and written.endswith("+00"))


def test_a_zone_s_timestamp_is_written_as_psycopg_writes_it():
    moment = datetime(2026, 3, 8, 12, 30, tzinfo=ZoneInfo("America/Sao_Paulo"))
    assert copy_timestamp(moment) == str(moment) == "2026-03-08 12:30:00-03:00"


def test_generated_orders_are_written_without_escaping():
    orders = [OrderGenerator(seed, whole_bills=seed % 2 == 1).order() for seed in range(20)]
    block = orders_block(orders)
    assert "\\" not in items_block(orders)
    assert block.count("\\") == block.count(COPY_NULL) == sum(not order.payments for order in orders)


@pytest.mark.parametrize("field", ["customer_name", "dish"])
def test_a_nul_character_is_refused_in_psycopg_s_words(field: str):
    order = with_text(OrderGenerator(1).order(), field, "a\x00b")
    with pytest.raises(psycopg.DataError, match=re.escape(NUL_REFUSED)):
        orders_block([order]) if field == "customer_name" else items_block([order])


def with_text(order: Order, field: str, text: str) -> Order:
    """``order`` with ``text`` as its ``field``, or as its first line's."""
    if field in ("dish", "category"):
        first = msgspec.structs.replace(order.items[0], **{field: text})
        return msgspec.structs.replace(order, items=[first, *order.items[1:]])
    return msgspec.structs.replace(order, **{field: text})


# --- Through the save path into PostgreSQL -------------------------------------------------

READ_ORDERS = f"""
SELECT {", ".join(name if name != "order_id" else "order_id::text" for name, _ in ORDER_COLUMNS)}
FROM orders WHERE order_id = ANY(%s::uuid[]) ORDER BY order_id
"""
READ_LINES = f"""
SELECT {", ".join(name if name != "order_id" else "order_id::text" for name, _ in ITEM_COLUMNS)}
FROM order_items WHERE order_id = ANY(%s::uuid[]) ORDER BY order_id, line_no
"""


def expected_tables(orders: list[Order]) -> tuple[list[tuple], list[tuple]]:
    """The rows the tables should hold for ``orders``, as psycopg reads them (payments as JSON)."""
    rows = [tuple(expected_value(v, t) for v, (_, t) in zip(row, ORDER_COLUMNS, strict=True))
            for row in order_rows(orders)]
    return sorted(rows), sorted(item_rows(orders))


@pytest.mark.integration
def test_any_batch_is_stored_exactly_and_its_redelivery_finds_no_conflict(database_url: str):
    with (asyncio.Runner() as runner,
          psycopg.connect(database_url, autocommit=True, options="-c TimeZone=UTC") as conn):
        # The sink's sessions in a zone of their own: a timestamp written without its offset would move.
        conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Kathmandu'").format(
            sql.Identifier(conn.info.dbname)))
        database = Database(database_url)
        sink = PostgresOrderSink(database)
        runner.run(sink.ready())

        @settings(max_examples=150, deadline=None)
        @given(BATCHES)
        def store(orders: list[Order]) -> None:
            ids = [order.order_id for order in orders]
            conn.execute("DELETE FROM order_keys WHERE order_id = ANY(%s::uuid[])", (ids,))  # a replay
            batch = [Accepted(order, Source("orders", 0, n, b"")) for n, order in enumerate(orders)]
            assert runner.run(sink.save(batch)).new_orders == len(orders)
            assert (conn.execute(READ_ORDERS, (ids,)).fetchall(),
                    conn.execute(READ_LINES, (ids,)).fetchall()) == expected_tables(orders)
            again = runner.run(sink.save(batch))
            assert (again.new_orders, again.rejections) == (0, [])

        try:
            store()
        finally:
            runner.run(database.close())


@pytest.mark.integration
@pytest.mark.parametrize(("field", "text", "reason"), [
    ("customer_name", "a\x00b", f"PostgreSQL refused the order: {NUL_REFUSED}"),
    ("dish", "\x00", f"PostgreSQL refused the order: {NUL_REFUSED}"),
    ("category", "x\ud800", "cannot encode it: 'utf-8' codec can't encode character '\\ud800'"),
    ("store_id", "\udfff", "cannot encode it: 'utf-8' codec can't encode character '\\udfff'"),
])
async def test_what_postgresql_cannot_store_refuses_the_batch_and_stores_none_of_it(
    database_url: str, field: str, text: str, reason: str
):
    database = Database(database_url)
    sink = PostgresOrderSink(database)
    await sink.ready()
    generator = OrderGenerator(7)
    orders = [generator.order(), with_text(generator.order(), field, text)]
    try:
        with pytest.raises(RowsRefused) as refused:
            await sink.save([Accepted(o, Source("orders", 0, n, b"")) for n, o in enumerate(orders)])
        assert str(refused.value).startswith(reason)
    finally:
        await database.close()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)

