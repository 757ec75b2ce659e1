"""Orders dated outside the window around now are rejected, and create no partitions."""

from datetime import UTC, datetime, timedelta

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import InvalidOrder, parse_order
from tests.foreign_clients import kcat
from tests.services import query, wait_until

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def test_an_order_older_than_the_window_is_rejected_with_its_age():
    old = OrderGenerator(seed=1).order(NOW - WEEK - timedelta(seconds=1))
    reason = r"'created_at' 2026-11-24T11:59:59.*is more than 7 days in the past"
    with pytest.raises(InvalidOrder, match=reason):
        parse_order(old.dumps(), max_age=WEEK, now=NOW)


def test_an_order_inside_the_window_is_accepted_and_no_window_means_any_age():
    recent = OrderGenerator(seed=2).order(NOW - WEEK + timedelta(seconds=1))
    assert parse_order(recent.dumps(), max_age=WEEK, now=NOW) == recent
    ancient = OrderGenerator(seed=3).order(datetime(2001, 1, 1, tzinfo=UTC))
    assert parse_order(ancient.dumps(), now=NOW) == ancient


@pytest.mark.integration
def test_orders_dated_across_5000_days_are_rejected_without_creating_partitions(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.start()
    generator = OrderGenerator(seed=194)
    now = datetime.now(UTC)
    old = [generator.order(now - timedelta(days=8 + n)) for n in range(5000)]
    good = [generator.order() for _ in range(10)]
    partitions = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass"
    wait_until(lambda: query(database_url, partitions)[0][0] > 1, message="no day partitions at start")
    before = query(database_url, partitions)[0][0]
    kcat(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], [o.dumps() for o in good[:5] + old + good[5:]])

    counts = ("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM rejected_orders),"
              " (SELECT count(*) FROM rejected_orders WHERE reason LIKE '%%is more than 7 days in the past')")
    wait_until(lambda: query(database_url, counts) == [(len(good), len(old), len(old))], timeout=180,
               message=f"not every order was answered: {query(database_url, counts)}")
    assert query(database_url, partitions)[0][0] == before
    assert query(database_url, "SELECT count(*) FROM orders_default") == [(0,)]
    worker.check_alive()
