"""The worker's pool checks a connection before handing it out only if it sat unused for a while:
a worker storing a batch every few milliseconds pays no round trip per batch for it, and a
connection that broke in between is an outage the caller waits out, never a lost batch."""

from collections.abc import AsyncIterator

import pytest

from restaurant_app import database as database_module
from restaurant_app.database import Database, DatabaseUnavailable, until_available
from restaurant_app.order_sink import Accepted, PostgresOrderSink, Source
from restaurant_app.traffic import OrderGenerator
from tests.services import query

pytestmark = pytest.mark.integration


def cut_the_pools_connections(database_url: str) -> int:
    """End every other session of the database, as a restart of PostgreSQL would; return how many."""
    return len(query(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                   " WHERE datname = current_database() AND pid <> pg_backend_pid()"))


def stored(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM orders")[0][0]


def batch(generator: OrderGenerator, first_offset: int) -> list[Accepted]:
    return [Accepted(generator.order(), Source("orders", 0, first_offset + n, b"")) for n in range(3)]


@pytest.fixture
async def sink(database_url: str) -> AsyncIterator[PostgresOrderSink]:
    """A sink on the worker's pool, its first batch of 3 orders stored."""
    database = Database(database_url)
    sink = PostgresOrderSink(database)
    await sink.ready()
    try:
        await sink.save(batch(OrderGenerator(11), 0))
        yield sink
    finally:
        await database.close()


async def test_a_connection_handed_out_a_moment_ago_is_not_checked_and_its_break_is_waited_out(
    sink: PostgresOrderSink, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(database_module, "CHECK_AFTER_SECONDS", 60.0)  # however slow the machine
    assert cut_the_pools_connections(database_url) >= 1
    # Handed out again at once, unchecked: the batch meets the broken connection, as an outage.
    second = batch(OrderGenerator(12), 3)
    with pytest.raises(DatabaseUnavailable):
        await sink.save(second)
    # Waited out as every outage is: the broken connection is gone, the batch is stored once.
    saved = await until_available(lambda: sink.save(second), "storing the second batch")
    assert saved.new_orders == 3
    assert stored(database_url) == 6


async def test_a_connection_unused_for_a_while_is_checked_and_replaced_before_it_is_handed_out(
    sink: PostgresOrderSink, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(database_module, "CHECK_AFTER_SECONDS", 0.0)  # every connection has sat long enough
    assert cut_the_pools_connections(database_url) >= 1
    saved = await sink.save(batch(OrderGenerator(12), 3))  # no outage: the check found the break first
    assert saved.new_orders == 3
    assert stored(database_url) == 6
