"""The load command `produce-orders`: new order ids on every run, and a failure when Kafka refuses."""

import asyncio
import os
import subprocess

import pytest
from aiokafka.errors import KafkaTimeoutError

from infra.scratch import ScratchStack, faust_command
from restaurant_app.commands import Deliveries
from restaurant_app.settings import PROJECT_ROOT
from tests.services import consume_all, create_topic, unique_names


async def test_deliveries_count_the_publications_kafka_refused():
    loop = asyncio.get_running_loop()
    deliveries = Deliveries()
    futures = [loop.create_future() for _ in range(4)]
    for delivery in futures:
        deliveries.watch(delivery)
    futures[0].set_result(None)
    futures[1].set_exception(KafkaTimeoutError("batch expired"))
    loop.call_later(0.01, futures[2].set_result, None)
    loop.call_later(0.02, futures[3].set_exception, KafkaTimeoutError("later"))
    await deliveries.settled()
    assert deliveries.failed == 2
    assert "batch expired" in str(deliveries.first_error)
    assert not deliveries.pending


def produce_orders(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(faust_command("produce-orders", *args), env={**os.environ, **env},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.integration
def test_two_load_runs_with_the_same_seed_publish_different_orders(stack: ScratchStack):
    env = {**unique_names(), "KAFKA_BROKER": stack.bootstrap_servers, "TOPIC_PARTITIONS": "1"}
    for _ in range(2):
        run = produce_orders(env, "--count", "100", "--seed", "42")
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Published 100 order(s)" in run.stdout
    keys = [r.key for r in consume_all(stack.bootstrap_servers, env["ORDERS_TOPIC"], expected=200)]
    assert len(keys) == 200 and len(set(keys)) == 200


@pytest.mark.integration
def test_the_load_command_fails_when_kafka_refuses_the_orders(stack: ScratchStack):
    env = {**unique_names(), "KAFKA_BROKER": stack.bootstrap_servers, "TOPIC_PARTITIONS": "1"}
    create_topic(stack.bootstrap_servers, env["ORDERS_TOPIC"], **{"max.message.bytes": "64"})
    run = produce_orders(env, "--count", "5")
    assert run.returncode != 0
    assert "Kafka did not acknowledge 5 of 5 order(s)" in run.stdout + run.stderr
