"""The load command `produce-orders`: new order ids on every run, a failure when Kafka refuses, and a
file of real orders replayed as a producer would."""

import asyncio
import json
import os
import subprocess

import pytest
from aiokafka.errors import KafkaTimeoutError

from infra.scratch import ScratchStack, WorkerProcess, faust_command
from restaurant_app.commands import Deliveries, count_lines, generated, replayed
from restaurant_app.settings import PROJECT_ROOT
from restaurant_app.traffic import OrderGenerator
from tests.services import consume_all, create_topic, query, unique_names, wait_until


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
    records = consume_all(stack.bootstrap_servers, env["ORDERS_TOPIC"], expected=200)
    assert len({json.loads(r.value)["order_id"] for r in records}) == len(records) == 200
    assert {r.key for r in records} == {b"main"}  # keyed by their store


@pytest.mark.integration
def test_the_load_command_fails_when_kafka_refuses_the_orders(stack: ScratchStack):
    env = {**unique_names(), "KAFKA_BROKER": stack.bootstrap_servers, "TOPIC_PARTITIONS": "1"}
    create_topic(stack.bootstrap_servers, env["ORDERS_TOPIC"], **{"max.message.bytes": "64"})
    run = produce_orders(env, "--count", "5")
    assert run.returncode != 0
    assert "Kafka did not acknowledge 5 of 5 order(s)" in run.stdout + run.stderr


def test_a_replayed_file_gives_each_line_as_it_is_keyed_by_its_store(tmp_path):
    order = OrderGenerator(seed=50, stores=2).order(store_id="loja-02")
    refund = json.dumps({"kind": "refund", "order_id": order.order_id}).encode()
    stray = b'{"kind": "cancellation", "order_id": "e1b2c3d4-0000-4000-8000-000000000000"}'
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join([order.dumps() + b"\r\n", b"  ", refund, stray, b'{"order_id": 7}', b"[1]",
                                 b"not json"]))
    assert list(replayed(path)) == [("loja-02", order.dumps()), ("loja-02", refund), ("main", stray),
                                    ("main", b'{"order_id": 7}'), (None, b"[1]"), (None, b"not json")]
    assert count_lines(path) == 6


def test_generated_orders_are_spread_over_the_simulated_stores():
    stores = [json.loads(value)["store_id"] for _, value in generated(OrderGenerator(seed=51, stores=3), 7)]
    assert stores == ["loja-01", "loja-02", "loja-03"] * 2 + ["loja-01"]


@pytest.mark.integration
def test_a_file_of_real_orders_is_replayed_and_each_ends_stored_or_rejected(
    stack: ScratchStack, worker: WorkerProcess, database_url: str, tmp_path
):
    orders = OrderGenerator(seed=52).orders_for_tick(3)
    anonymous = {k: v for k, v in json.loads(orders[0].dumps()).items() if not k.startswith("customer")}
    lines = [o.dumps() for o in orders[1:]] + [json.dumps(anonymous).encode(), b'{"order_id": "nope"}']
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    worker.start()
    run = produce_orders(worker.env, "--file", str(path), "--rate", "100")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Published {len(lines)} order(s)" in run.stdout
    stored = "SELECT order_id::text FROM orders ORDER BY 1"
    wait_until(lambda: len(query(database_url, stored)) == len(orders), message="the orders never arrived")
    assert query(database_url, stored) == sorted((o.order_id,) for o in orders)
    rejected = wait_until(lambda: query(database_url, "SELECT raw, reason FROM rejected_orders") or None)
    assert [bytes(r[0]) for r in rejected] == [lines[-1]]
    assert rejected[0][1] == "missing field 'items'"
