"""A batch held longer than HELD_BATCH_ALARM_SECONDS shows on /health as 503, with the reason."""

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.traffic import OrderGenerator
from tests.services import admin, consume_all, create_topic, fetch, get, produce, query, wait_until

pytestmark = pytest.mark.integration


def set_topic_config(bootstrap_servers: str, topic: str, **config: str) -> None:
    admin(bootstrap_servers,
          lambda client: client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)]))


def unhealthy(url: str) -> dict | None:
    """/health's body if it answers 503."""
    status, body = get(url + "/health")
    return body if status == 503 else None


def held_seconds(url: str) -> float:
    """restaurant_ingest_held_seconds as /metrics gives it."""
    text = fetch(url + "/metrics")[1].decode()
    [line] = [line for line in text.splitlines() if line.startswith("restaurant_ingest_held_seconds ")]
    return float(line.split()[1])


def test_a_dead_letter_topic_that_refuses_for_longer_than_the_bound_makes_health_503_until_it_takes_them(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    dead_letter_topic = worker.env["DEAD_LETTER_TOPIC"]
    create_topic(stack.bootstrap_servers, dead_letter_topic, **{"max.message.bytes": "64"})
    worker.env["HELD_BATCH_ALARM_SECONDS"] = "3"
    generator = OrderGenerator(seed=193)
    good = [generator.order() for _ in range(4)]
    worker.start()
    assert get(worker.url + "/health")[0] == 200
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"],
            [(None, b"{broken"), *((None, o.dumps()) for o in good)])

    body = wait_until(lambda: unhealthy(worker.url), timeout=60, message="/health never said it was held")
    assert body["kafka"]["ok"] and body["database"]["ok"] and not body["ingest"]["ok"]
    assert "a batch has been held for" in body["ingest"]["error"]
    assert f"the dead-letter topic {dead_letter_topic!r}" in body["ingest"]["error"]
    ready_status, ready = get(worker.url + "/readyz")
    assert (ready_status, ready["status"], ready["down"]) == (503, "unavailable", ["ingest"])
    assert get(worker.url + "/livez") == (200, {"status": "alive"})
    assert held_seconds(worker.url) > 0

    set_topic_config(stack.bootstrap_servers, dead_letter_topic, **{"max.message.bytes": "1048588"})
    wait_until(lambda: get(worker.url + "/health")[0] == 200, timeout=90)
    assert get(worker.url + "/readyz")[0] == 200
    assert held_seconds(worker.url) == 0
    assert query(database_url, "SELECT count(*) FROM orders") == [(len(good),)]
    dead_lettered = "SELECT count(*) FROM rejected_orders WHERE dead_lettered_at IS NOT NULL"
    assert query(database_url, dead_lettered) == [(1,)]
    dead = consume_all(stack.bootstrap_servers, dead_letter_topic, expected=1)
    assert [m.value for m in dead] == [b"{broken"]
