"""The real generator across a worker restart: every order id is new, every customer id one person."""

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.traffic import OrderGenerator
from tests.services import produce, query, wait_until
from tests.test_scale_out import topic_order_ids

pytestmark = pytest.mark.integration

CUSTOMER_IDS_WITH_TWO_NAMES = (
    "SELECT customer_id FROM orders GROUP BY 1 HAVING count(DISTINCT customer_name) > 1"
)


def count_orders(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM orders")[0][0]


def test_a_restart_with_the_same_seed_places_new_orders_for_the_same_customers(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.env.update(ORDER_INTERVAL_SECONDS="0.5", ORDERS_PER_TICK="3", GENERATOR_SEED="5")
    worker.start()
    wait_until(lambda: count_orders(database_url) >= 40, message="the first run placed no orders")
    worker.stop()
    first_run = count_orders(database_url)

    worker.start()
    # Another generator with another seed, as a worker that took over the lead would have.
    other = OrderGenerator(seed=6).orders_for_tick(base=1000)
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"],
            [(o.order_id.encode(), o.dumps()) for o in other])
    wait_until(lambda: count_orders(database_url) >= first_run + len(other) + 40,
               message="the restarted worker placed no new orders")
    worker.stop()

    # PostgreSQL would hide a replayed order id (the insert is keyed on it): the topic shows it.
    keys = topic_order_ids(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"])
    assert len(keys) == len(set(keys)), "an order id was published twice"
    stored = {str(row[0]) for row in query(database_url, "SELECT order_id FROM orders")}
    assert stored <= set(keys)
    assert query(database_url, CUSTOMER_IDS_WITH_TWO_NAMES) == []
    shared = query(database_url, "SELECT count(DISTINCT customer_id) FROM orders WHERE customer_id = ANY(%s)"
                   " AND NOT order_id = ANY(%s::uuid[])",
                   ([o.customer_id for o in other], [o.order_id for o in other]))[0][0]
    assert shared > 0, "the two generators never served the same customer: the check proved nothing"
