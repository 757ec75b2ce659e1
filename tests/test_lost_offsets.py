"""Orders Kafka deleted before the worker stored them raise an alarm; the worker goes on from the rest."""

import logging

import pytest
from aiokafka.admin import RecordsToDelete
from aiokafka.structs import TopicPartition

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app import metrics
from restaurant_app.lost_offsets import FETCHER_LOGGER, LostOffsets, lost_offsets
from restaurant_app.traffic import OrderGenerator
from tests.services import admin, get, produce, query, wait_until


def test_aiokafkas_out_of_range_line_becomes_the_alarm(monkeypatch: pytest.MonkeyPatch):
    from restaurant_app.lost_offsets import install

    monkeypatch.setattr(lost_offsets, "seen", [])
    install()
    before = metrics.registry.get_sample_value("restaurant_kafka_offsets_out_of_range_total",
                                               {"topic": "orders"}) or 0.0
    logging.getLogger(FETCHER_LOGGER).info(
        "Fetch offset %s is out of range for partition %s, resetting offset",
        120, TopicPartition("orders", 3))
    assert lost_offsets.status()["out_of_range"][0] | {"at": 0} == {
        "topic": "orders", "partition": 3, "offset": 120, "at": 0}
    assert metrics.registry.get_sample_value("restaurant_kafka_offsets_out_of_range_total",
                                             {"topic": "orders"}) == before + 1


def test_the_fetchers_other_info_lines_keep_to_the_workers_level(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture):
    from restaurant_app.lost_offsets import install

    monkeypatch.setattr(lost_offsets, "seen", [])
    install()
    aiokafka = logging.getLogger("aiokafka")
    monkeypatch.setattr(aiokafka, "level", logging.WARNING)
    with caplog.at_level(logging.INFO):
        fetcher = logging.getLogger(FETCHER_LOGGER)
        fetcher.info("Fetch offset %s is out of range for partition %s, resetting offset",
                     7, TopicPartition("orders", 1))
        fetcher.info("an ordinary line at INFO")
        fetcher.warning("a warning")
    shown = [record.getMessage() for record in caplog.records if record.name == FETCHER_LOGGER]
    assert shown == ["a warning"]
    assert lost_offsets.status()["out_of_range"][0]["offset"] == 7


def test_nothing_lost_is_all_ok():
    assert LostOffsets().status() == {"ok": True}


@pytest.mark.integration
def test_orders_deleted_while_the_worker_was_down_show_on_health_and_the_rest_are_stored(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    topic = worker.env["ORDERS_TOPIC"]
    generator = OrderGenerator(seed=11)
    first, deleted, after = (generator.orders_for_tick(base=n) for n in (6, 5, 4))

    def count() -> int:
        return query(database_url, "SELECT count(*) FROM orders")[0][0]

    worker.start()
    produce(stack.bootstrap_servers, topic, [(o.order_id.encode(), o.dumps()) for o in first])
    wait_until(lambda: count() == len(first), message="the first orders were never stored")
    worker.stop()

    produce(stack.bootstrap_servers, topic, [(o.order_id.encode(), o.dumps()) for o in deleted])
    # What retention does to a topic the worker did not read in time: its oldest records go.
    partitions = [TopicPartition(topic, p) for p in range(2)]
    admin(stack.bootstrap_servers, lambda client: client.delete_records(
        {tp: RecordsToDelete(before_offset=-1) for tp in partitions}))
    produce(stack.bootstrap_servers, topic, [(o.order_id.encode(), o.dumps()) for o in after])

    worker.start()
    wait_until(lambda: count() == len(first) + len(after), message="the orders after the gap were not stored")
    status, health = get(f"{worker.url}/health")
    assert status == 200 and health["status"] == "degraded" and "kafka_retention" in health["down"]
    lost = health["kafka_retention"]["out_of_range"]
    assert {entry["topic"] for entry in lost} == {topic}
    stored = {row[0] for row in query(database_url, "SELECT order_id::text FROM orders")}
    assert stored == {o.order_id for o in first + after}
    assert "Kafka no longer holds" in worker.log_file.read_text()
