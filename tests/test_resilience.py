"""Outages and crashes lose no order and duplicate none."""

from pathlib import Path

import pytest

from infra.postgres import PostgresServer
from infra.scratch import ScratchStack, WorkerProcess
from infra.stack import free_port
from restaurant_app.models import Order
from restaurant_app.traffic import OrderGenerator
from tests.services import produce, query, wait_until

pytestmark = pytest.mark.integration


def many_orders(count: int, seed: int) -> list[Order]:
    generator = OrderGenerator(seed=seed)
    return [generator.order() for _ in range(count)]


def stored(database_url: str) -> tuple[int, int]:
    """(orders, order lines) in the database."""
    return query(
        database_url, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items)"
    )[0]


def expected(orders: list[Order]) -> tuple[int, int]:
    return len(orders), sum(len(o.items) for o in orders)


def publish(stack: ScratchStack, worker: WorkerProcess, orders: list[Order]) -> None:
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"],
            [(o.order_id.encode(), o.dumps()) for o in orders])


def test_postgres_down_mid_stream_loses_nothing(
    stack: ScratchStack, worker: WorkerProcess, own_service_home: Path
):
    postgres = PostgresServer(own_service_home, free_port())
    postgres.start()
    try:
        postgres.create_database("restaurant")
        url = postgres.url("restaurant")
        worker.env["DATABASE_URL"] = url
        before, during = many_orders(300, seed=20), many_orders(300, seed=21)
        worker.start()
        publish(stack, worker, before)
        wait_until(lambda: stored(url) == expected(before))

        postgres.stop()
        publish(stack, worker, during)
        worker.wait_for_log("PostgreSQL is unavailable", timeout=30)
        # A graceful stop during the outage must not commit the offsets of unsaved orders.
        worker.stop()
        worker.start()
        worker.wait_for_log("PostgreSQL is unavailable", timeout=30)
        postgres.start()

        wait_until(lambda: stored(url) == expected(before + during), timeout=90,
                   message="orders published during the outage never arrived")
    finally:
        worker.stop()
        postgres.stop()


def test_worker_killed_mid_stream_loses_and_duplicates_nothing(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    orders = many_orders(40_000, seed=30)
    publish(stack, worker, orders)
    worker.start()
    wait_until(lambda: stored(database_url)[0] > 0, interval=0.05)
    worker.kill()
    at_kill = stored(database_url)[0]
    assert at_kill < len(orders), "the worker finished before it could be killed mid-stream"

    worker.start(ready_timeout=150)  # the killed member keeps its partitions for the session timeout
    wait_until(lambda: stored(database_url) == expected(orders), timeout=120,
               message="orders were lost after the worker was killed")
    distinct = query(database_url, "SELECT count(DISTINCT order_id) FROM orders")[0][0]
    assert distinct == len(orders)


def test_unreachable_kafka_at_start_is_reported_plainly_and_retried(worker: WorkerProcess):
    worker.env["KAFKA_BROKER"] = f"127.0.0.1:{free_port()}"
    with pytest.raises(TimeoutError):
        worker.start(ready_timeout=8)
    log = worker.log_file.read_text()
    assert "is not reachable" in log
    assert log.count("is not reachable") >= 2
    assert "Traceback" not in log
    assert worker.process is not None and worker.process.poll() is None, "the worker gave up"
