"""orders and order_items partitioned by day (migration 006), on a PostgreSQL server of this module's own.

The migration is run on a database filled by the schema and save path before it; the day
partitions are made ahead and fed from the default partition; one order per order_id holds
across days and concurrent saves; queries for some minutes read only their day's partitions.
"""

import asyncio
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import msgspec
import psycopg
import pytest

import restaurant_app.order_sink
from infra.postgres import PostgresServer
from infra.stack import free_port
from restaurant_app import database as database_module
from restaurant_app import partitions as partitions_module
from restaurant_app.database import Database
from restaurant_app.models import Order
from restaurant_app.order_sink import Accepted, PostgresOrderSink, Source, save_orders
from restaurant_app.partitions import PARTITIONS_LOCK_ID, add_partitions, keep_partitions
from restaurant_app.traffic import OrderGenerator
from spark_reports.store import SPARK_ORDER_LINES
from tests.conftest import service_home
from tests.services import query

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
DAYS = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
ODD_MOMENT = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
"""An order's created_at far from any day partition: it lands in the default partition."""

# The save path's statement before migration 006 (restaurant_app/order_sink.py as it was), with which
# the database that 006 migrates is filled: an order keyed on order_id alone.
PREVIOUS_INSERT = """
WITH new AS (
    INSERT INTO orders (order_id, created_at, customer_id, customer_name, channel, payment_method, total)
    SELECT order_id, created_at, customer_id, customer_name, channel, payment_method, total
    FROM staged_orders
    ON CONFLICT (order_id) DO NOTHING RETURNING order_id
), lines AS (
    INSERT INTO order_items (order_id, line_no, dish, category, unit_price, quantity)
    SELECT s.order_id, s.line_no, s.dish, s.category, s.unit_price, s.quantity
    FROM staged_order_items s JOIN new USING (order_id)
    ON CONFLICT (order_id, line_no) DO NOTHING
)
SELECT count(*) FROM new
"""

# What a migration between 001 and 006 could have added to orders: a column with a default, a
# generated column and a partial index. 006 must carry them over.
EARLIER_ADDITIONS = """
ALTER TABLE orders ADD COLUMN test_note text NOT NULL DEFAULT 'noted';
ALTER TABLE orders ADD COLUMN test_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED;
CREATE INDEX orders_test_note_idx ON orders (test_note) WHERE test_note <> 'noted';
"""

ITEM_COLUMNS = "order_id, line_no, dish, category, unit_price, quantity"
LINES_WITH_THEIR_ORDER = """
SELECT count(*) FROM order_items i
JOIN orders o ON o.order_id = i.order_id AND o.created_at = i.order_created_at
"""
ORDERS_WITH_THEIR_KEY = "SELECT count(*) FROM order_keys k JOIN orders o USING (order_id, created_at)"
DAYS_OF_PARTITIONS = """
SELECT tableoid::regclass::text, (min(created_at) AT TIME ZONE 'UTC')::date,
       (max(created_at) AT TIME ZONE 'UTC')::date, count(*)
FROM orders GROUP BY 1 ORDER BY 2
"""
DEFAULT_ROWS = "SELECT (SELECT count(*) FROM orders_default), (SELECT count(*) FROM order_items_default)"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    home = service_home()
    server = PostgresServer(home / "postgres", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def new_database(postgres: PostgresServer, name: str) -> str:
    postgres.create_database(name)
    return postgres.url(name)


def history() -> list[Order]:
    """Three days of the generator's orders, every 20 minutes, and one at an odd moment."""
    generator = OrderGenerator(seed=6)
    orders = [order for step in range(0, 3 * 24 * 3600, 1200)
              for order in generator.orders_for_tick(1, START + timedelta(seconds=step))]
    return [*orders, generator.order(ODD_MOMENT)]


def changed(order: Order, **fields: object) -> Order:
    """The same order with other ``fields``: another version under the same order_id."""
    return msgspec.structs.replace(order, **fields)


def pre_006_database(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database on the migrations before 006 and EARLIER_ADDITIONS, filled by the save path of then."""
    url = new_database(postgres, "before_006")
    earlier = [m for m in database_module.migration_files() if m[0] < "006"]
    with monkeypatch.context() as patch:
        patch.setattr(database_module, "migration_files", lambda: earlier)
        # The roles the grants name come with migration 023, and some of the tables later still.
        patch.setattr(database_module, "privileges", lambda: "SELECT 1")
        patch.setattr(restaurant_app.order_sink, "INSERT_ORDERS_AND_LINES", PREVIOUS_INSERT)
        asyncio.run(Database(url).migrate())
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(EARLIER_ADDITIONS)
        orders = history()
        assert asyncio.run(save_orders(url, orders)) == len(orders)
    return url


def test_the_migration_keeps_every_row_columns_defaults_and_indexes(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
):
    url = pre_006_database(postgres, monkeypatch)
    with psycopg.connect(url) as conn:
        order_columns = ", ".join(c.name for c in conn.execute("SELECT * FROM orders LIMIT 0").description)
    orders_before = query(url, f"SELECT {order_columns} FROM orders ORDER BY order_id")
    items_before = query(url, f"SELECT {ITEM_COLUMNS} FROM order_items ORDER BY order_id, line_no")
    pedidos_before = query(url, "SELECT * FROM pedidos ORDER BY pedido_id, nome_prato")

    assert asyncio.run(Database(url).migrate()) == [m[0] for m in database_module.migration_files()
                                                    if m[0] >= "006"]

    # Migration 012 adds the order's store: the single store, 'main', for every order before (later
    # migrations add columns of their own, left out here).
    assert query(url, f"SELECT {order_columns}, store_id FROM orders ORDER BY order_id") == [
        (*row, "main") for row in orders_before]
    assert query(url, f"SELECT {ITEM_COLUMNS} FROM order_items ORDER BY order_id, line_no") == items_before
    assert query(url, "SELECT * FROM pedidos ORDER BY pedido_id, nome_prato") == pedidos_before
    assert query(url, LINES_WITH_THEIR_ORDER) == [(len(items_before),)]
    assert query(url, ORDERS_WITH_THEIR_KEY) == [(len(orders_before),)]
    # One partition per day with orders, each holding its own day; none in the default one.
    assert query(url, DAYS_OF_PARTITIONS) == [
        ("orders_p20010203", ODD_MOMENT.date(), ODD_MOMENT.date(), 1),
        *[(f"orders_p{day:%Y%m%d}", day, day, count) for day, count in orders_per_day(orders_before)]]
    assert query(url, DEFAULT_ROWS) == [(0, 0)]
    # The earlier migration's default, generated column and index came along.
    indexes = {row[0] for row in query(url, "SELECT indexdef FROM pg_indexes WHERE tablename = 'orders'")}
    assert ("CREATE INDEX orders_test_note_idx ON ONLY public.orders USING btree (test_note)"
            " WHERE (test_note <> 'noted'::text)") in indexes
    assert {"orders_created_at_idx", "orders_ingested_at_idx", "orders_pkey"} <= {
        row[0] for row in query(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")}
    order = OrderGenerator(seed=7).order(START)
    asyncio.run(save_orders(url, [order]))
    assert query(url, "SELECT test_note, test_cents FROM orders WHERE order_id = %s", (order.order_id,)) == [
        ("noted", int(order.total * 100))]


def orders_per_day(order_rows: list[tuple]) -> list[tuple[date, int]]:
    """How many of these ``orders`` rows (created_at second) fall on each UTC day but the odd one's."""
    days: dict[date, int] = {}
    for row in order_rows:
        day = row[1].astimezone(UTC).date()
        if day != ODD_MOMENT.date():
            days[day] = days.get(day, 0) + 1
    return sorted(days.items())


@pytest.fixture
def url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A database on every migration, without the worker's partitions ahead."""
    url = new_database(postgres, request.node.name.lower()[:40])
    asyncio.run(Database(url).migrate())
    return url


async def saved(url: str, orders: list[Order]) -> tuple[int, list[str]]:
    """Save through the real sink: the new orders and the rejections' kinds."""
    database = Database(url, max_size=1)
    sink = PostgresOrderSink(database)
    await sink.ready()
    try:
        sources = [Source("test", 0, n, b"") for n in range(len(orders))]
        result = await sink.save([Accepted(o, s) for o, s in zip(orders, sources, strict=True)])
        return result.new_orders, [r.kind for r in result.rejections]
    finally:
        await database.close()


def test_partitions_are_made_ahead_and_the_default_rows_move_into_their_day(url: str):
    today = date(2026, 11, 29)
    orders = [*OrderGenerator(seed=8).orders_for_tick(3, ODD_MOMENT), OrderGenerator(seed=9).order(START)]
    asyncio.run(save_orders(url, orders))
    before = snapshot(url)
    assert query(url, "SELECT count(*) FROM orders_default") == [(len(orders),)]

    created, moved = asyncio.run(keep(url, today))

    expected = sorted({ODD_MOMENT.date(), START.date(), *(today + timedelta(days=n) for n in range(-1, 8))})
    assert (created, moved) == (expected, len(orders))
    assert snapshot(url) == before
    assert query(url, DEFAULT_ROWS) == [(0, 0)]
    assert query(url, "SELECT DISTINCT tableoid::regclass::text FROM order_items ORDER BY 1") == [
        ("order_items_p20010203",), ("order_items_p20261120",)]
    assert asyncio.run(keep(url, today)) == ([], 0)


def test_the_worker_s_role_keeps_the_partitions_through_migration_024_s_function(
        postgres: PostgresServer, url: str):
    """``restaurant_ingest`` owns no table, may not create one, and still makes the days and moves
    the default's rows: ``upkeep_add_day`` runs as the tables' owner."""
    name = url.rsplit("/", 1)[1]
    postgres.enable_roles(name)
    ingest = postgres.role_url("restaurant_ingest", name)
    orders = [OrderGenerator(seed=12).order(START), OrderGenerator(seed=13).order(ODD_MOMENT)]
    asyncio.run(save_orders(ingest, orders))
    before = snapshot(url)
    with psycopg.connect(ingest) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE orders_p20011231 PARTITION OF orders"
                     " FOR VALUES FROM ('2001-12-31 00:00+00') TO ('2002-01-01 00:00+00')")
    created, moved = asyncio.run(keep(ingest, START.date()))
    assert {START.date(), ODD_MOMENT.date()} <= set(created) and moved == 2
    assert snapshot(url) == before and query(url, DEFAULT_ROWS) == [(0, 0)]
    owners = query(url, "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relname LIKE"
                        " 'orders\\_p%%' OR relname LIKE 'order\\_items\\_p%%'")
    assert owners == query(url, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'orders'")


def snapshot(url: str) -> tuple[list[tuple], list[tuple]]:
    return (query(url, "SELECT * FROM orders ORDER BY order_id"),
            query(url, "SELECT * FROM order_items ORDER BY order_id, line_no"))


async def keep(url: str, today: date) -> tuple[list[date], int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await keep_partitions(conn, today)


def test_one_order_per_order_id_whatever_its_created_at(url: str):
    order = OrderGenerator(seed=10).order(START)
    next_day = changed(order, created_at=START + timedelta(days=1))
    asyncio.run(create_days(url, DAYS))

    assert asyncio.run(saved(url, [order])) == (1, [])
    assert asyncio.run(saved(url, [order])) == (0, [])
    assert asyncio.run(saved(url, [next_day])) == (0, ["ConflictingDuplicate"])
    assert query(url, "SELECT created_at FROM orders WHERE order_id = %s", (order.order_id,)) == [(START,)]
    with pytest.raises(psycopg.errors.ForeignKeyViolation), psycopg.connect(url) as conn:
        conn.execute("INSERT INTO orders (order_id, created_at, customer_id, customer_name, channel,"
                     " payment_method, total) SELECT order_id, created_at + interval '1 day', customer_id,"
                     " customer_name, channel, payment_method, total FROM orders")


def test_deleting_an_order_s_key_deletes_the_order_and_its_lines_and_no_other(url: str):
    """Lines (migration 027) and orders (029) have no foreign key: triggers on order_keys delete them."""
    generator = OrderGenerator(seed=11)
    kept, gone, other_day = (generator.order(START + timedelta(seconds=n, days=n // 2)) for n in range(3))
    asyncio.run(create_days(url, DAYS))
    asyncio.run(save_orders(url, [kept, gone, other_day]))
    lines = "SELECT order_id::text, count(*) FROM order_items GROUP BY 1 ORDER BY 1"
    before = dict(query(url, lines))
    assert before[gone.order_id] == len(gone.items)
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM order_keys WHERE order_id = ANY(%s::uuid[])",
                     ([gone.order_id, other_day.order_id],))
    assert dict(query(url, lines)) == {kept.order_id: len(kept.items)}
    assert query(url, "SELECT order_id::text FROM orders") == [(kept.order_id,)]
    assert query(url, "SELECT conname FROM pg_constraint WHERE conrelid IN"
                      " ('order_items'::regclass, 'orders'::regclass) AND contype = 'f'") == []


async def create_days(url: str, days: list[date]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await add_partitions(conn, days)


async def test_a_save_waits_for_a_concurrent_one_with_the_same_order_id(url: str):
    """Two workers storing the same order_id at once, each with its own created_at: one is kept."""
    order = OrderGenerator(seed=11).order(START)
    other = changed(order, created_at=START + timedelta(days=1), customer_id=order.customer_id + 1)
    await create_days(url, DAYS)
    async with await psycopg.AsyncConnection.connect(url) as first:
        await first.execute("INSERT INTO order_keys (order_id, created_at) VALUES (%s, %s)",
                            (order.order_id, order.created_at))
        second = asyncio.create_task(saved(url, [other]))
        await asyncio.sleep(1.0)
        assert not second.done(), "the second save did not wait for the first one's key"
        await first.execute(
            "INSERT INTO orders (order_id, created_at, customer_id, customer_name, channel, payment_method,"
            " total) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (order.order_id, order.created_at, order.customer_id, order.customer_name, order.channel,
             order.payment_method, order.total))
        await first.commit()
        assert await asyncio.wait_for(second, 30) == (0, ["ConflictingDuplicate"])
    assert query(url, "SELECT created_at, customer_id FROM orders") == [(START, order.customer_id)]


async def test_two_upkeeps_at_once_queue_instead_of_deadlocking(url: str):
    """One worker's upkeep is creating a day while another's starts (two workers starting at once)."""
    far_day = date(2026, 12, 25)
    await create_days(url, DAYS)
    async with await psycopg.AsyncConnection.connect(url) as first:
        await first.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITIONS_LOCK_ID,))
        second = asyncio.create_task(keep(url, date(2026, 11, 21)))
        await asyncio.sleep(1.0)
        assert not second.done(), "the second upkeep did not wait for the first"
        # Creating a partition locks the default partition, which the second must not be reading.
        assert await add_partitions(first, [far_day]) == ([far_day], 0)
        await first.commit()
        created, moved = await asyncio.wait_for(second, 30)
    assert far_day not in created and moved == 0


def plan(url: str, sql: str, params: tuple = (), analyze: bool = False) -> list[dict]:
    """The plan's nodes that read a table, from EXPLAIN (FORMAT JSON)."""
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    with psycopg.connect(url) as conn:
        document = conn.execute(f"EXPLAIN ({options}) {sql}", params).fetchone()[0]
    found = []

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            found.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk((document if isinstance(document, list) else json.loads(document))[0]["Plan"])
    return found


def test_a_query_for_some_minutes_reads_only_their_days_partitions(url: str):
    asyncio.run(create_days(url, DAYS))
    asyncio.run(save_orders(url, history()))
    minute = datetime(2026, 11, 21, 14, 10, tzinfo=UTC)  # history() has an order there

    # Bounds known when planning: the other days are not even in the plan.
    nodes = plan(url, "SELECT count(*), sum(total) FROM orders WHERE created_at >= %s AND created_at < %s",
                 (minute, minute + timedelta(minutes=1)))
    assert {n["Relation Name"] for n in nodes} == {"orders_p20261121"}

    # The report job's read: bounds from report_scope, so the other days are pruned while running.
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO report_scope VALUES ('minute', %s, %s)",
                     (minute, minute + timedelta(minutes=1)))
    nodes = plan(url, SPARK_ORDER_LINES, analyze=True)
    read = {n["Relation Name"] for n in nodes if n["Actual Loops"] > 0}
    # order_events (migration 021) is not partitioned: its events are read by their order.
    assert read == {"report_scope", "orders_p20261121", "order_items_p20261121", "order_events"}
    assert {n["Relation Name"] for n in nodes} > read  # the other days: planned, never run


def test_many_days_in_the_default_partition_are_moved_in_transactions_of_bounded_size(
    url: str, monkeypatch: pytest.MonkeyPatch
):
    generator = OrderGenerator(seed=19)
    orders = [generator.order(ODD_MOMENT + timedelta(days=n)) for n in range(40)]
    asyncio.run(save_orders(url, orders))
    sizes: list[int] = []
    add = partitions_module._add_partitions

    async def counted(conn, days, most=None):
        added = await add(conn, days, most)
        sizes.append(len(added[0]))
        return added

    monkeypatch.setattr(partitions_module, "_add_partitions", counted)
    today = date(2026, 11, 29)
    created, moved = asyncio.run(keep(url, today))

    assert len(created) == 40 + 9 and moved == 40
    assert max(sizes) == partitions_module.DAYS_PER_TRANSACTION and len(sizes) == 4
    assert query(url, DEFAULT_ROWS) == [(0, 0)]
