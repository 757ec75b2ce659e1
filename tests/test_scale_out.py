"""Scaling out on real processes: a broker of three killed under load; the leading one of two workers killed.

Both tests account for every order: each one on the orders topic is stored once, and nothing else is.
"""

import asyncio
import functools
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import faust
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from infra.kafka_broker import KafkaBroker, KafkaCluster
from infra.process import spawn, terminate
from infra.scratch import ScratchStack, WorkerProcess, faust_command
from infra.stack import free_port, local_kafka
from restaurant_app.kafka_probe import min_insync_replicas, replication_factor
from restaurant_app.kafka_transport import FastTransport
from restaurant_app.models import Order
from restaurant_app.settings import PROJECT_ROOT, Settings
from restaurant_app.traffic import OrderGenerator
from tests.services import admin, create_topic, query, unique_names, wait_until

STAMP = r"^\[(?P<at>[\d-]+ [\d:,]+)\]"
"""Faust's timestamp at the start of a log line: ``[2026-01-02 12:00:00,123] [pid] [INFO] ...``."""
PLACED = re.compile(STAMP + r".*Placed \d+ new order", re.MULTILINE)
REPORT = re.compile(
    STAMP + r".*(?:Report run \w+ (?:in|after) (?P<seconds>[\d.]+) s|Skipping this report run)", re.MULTILINE
)


@pytest.fixture
def cluster(own_service_home: Path) -> Iterator[KafkaCluster]:
    """Three Kafka nodes (each broker and controller) on free ports, stopped after the test."""
    kafka = KafkaCluster(own_service_home / "kafka", [(free_port(), free_port()) for _ in range(3)],
                         heap="256m", log_level="WARN")
    kafka.start(timeout=300)
    yield kafka
    kafka.stop()


def worker_env(bootstrap_servers: str, database_url: str, **overrides: str) -> dict[str, str]:
    """A worker isolated to one test, on six partitions, with the generator and reports quiet."""
    return {
        **unique_names(),
        "KAFKA_BROKER": bootstrap_servers,
        "DATABASE_URL": database_url,
        "ORDERS_TOPIC_PARTITIONS": "6",
        "ORDER_INTERVAL_SECONDS": "3600",
        "REPORT_INTERVAL_SECONDS": "3600",
        **overrides,
    }


def orders_from(seed: int, count: int) -> list[Order]:
    generator = OrderGenerator(seed=seed)
    return [generator.order() for _ in range(count)]


def publish(bootstrap_servers: str, topic: str, orders: list[Order]) -> None:
    """Publish orders with acks=all, as the point of sale should, and wait until Kafka has them all.

    With acks=1 a broker killed before its followers copied a message would lose it for good.
    """

    async def send_all() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5,
                                    request_timeout_ms=120_000)
        await producer.start()
        try:
            sent = [await producer.send(topic, o.dumps(), key=o.order_id.encode()) for o in orders]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(send_all())


def topic_order_ids(bootstrap_servers: str, topic: str) -> list[str]:
    """The order id of every order on the topic, from the start to its end now, repeats included
    (the simulator's cancellations and refunds name their order: they are left out)."""

    partitions = [TopicPartition(topic, p) for p in range(topic_layout(bootstrap_servers, topic)[0])]

    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                    group_id=None)
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            ids: list[str] = []
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    messages = (json.loads(r.value) for r in records if r.offset < ends[tp])
                    ids += [m["order_id"] for m in messages if "kind" not in m]
            return ids
        finally:
            await consumer.stop()

    return asyncio.run(read())


def stored_ids(database_url: str) -> set[str]:
    return {str(row[0]) for row in query(database_url, "SELECT order_id FROM orders")}


def assert_stored_exactly_once(database_url: str, on_topic: list[str]) -> None:
    """No order sent twice, every order on the topic stored, nothing else stored, no row twice."""
    assert len(on_topic) == len(set(on_topic)), "an order was sent to the topic twice"
    [(rows, distinct)] = query(database_url, "SELECT count(*), count(DISTINCT order_id) FROM orders")
    assert rows == distinct == len(on_topic)
    assert stored_ids(database_url) == set(on_topic)


def topic_layout(bootstrap_servers: str, topic: str) -> tuple[int, set[int], set[int], str]:
    """(partitions, replicas per partition, in-sync replicas per partition, min.insync.replicas).

    A topic that does not exist has no partitions and no configuration.
    """

    async def describe(client: AIOKafkaAdminClient) -> tuple[int, set[int], set[int], str]:
        [described] = await client.describe_topics([topic])
        [response] = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})])
        [[*_, entries]] = [resource[3:] for resource in response.resources]
        min_insync = next((entry[1] for entry in entries if entry[0] == "min.insync.replicas"), "")
        partitions = described["partitions"]
        return (len(partitions), {len(p["replicas"]) for p in partitions},
                {len(p["isr"]) for p in partitions}, min_insync)

    return admin(bootstrap_servers, describe)


def group_coordinator(kafka: KafkaCluster, group: str) -> KafkaBroker:
    """The node that keeps the consumer group's offsets and membership."""
    node_id = admin(kafka.bootstrap_servers, lambda client: client.find_coordinator(group))
    return next(node for node in kafka.nodes if node.membership.node_id == node_id)


@pytest.mark.integration
def test_a_broker_of_three_killed_and_restarted_under_load_loses_and_duplicates_nothing(
    cluster: KafkaCluster, database_url: str, tmp_path: Path
):
    env = worker_env(cluster.bootstrap_servers, database_url, DATA_DIR=str(tmp_path / "data"))
    topic = env["ORDERS_TOPIC"]
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start(ready_timeout=240)
        assert topic_layout(cluster.bootstrap_servers, topic) == (6, {3}, {3}, "2")
        wait_until(lambda: topic_layout(cluster.bootstrap_servers, env["DEAD_LETTER_TOPIC"])
                   == (6, {3}, {3}, "2"), timeout=120, message="the dead-letter topic is missing or other")
        leader_topic = f"{env['APP_ID']}-__assignor-__leader"  # Faust's, for electing the leader
        assert topic_layout(cluster.bootstrap_servers, leader_topic)[1] == {3}

        rounds = [orders_from(seed, 400) for seed in range(100, 110)]
        victim = group_coordinator(cluster, env["APP_ID"])
        publish(cluster.bootstrap_servers, topic, rounds[0])
        wait_until(lambda: len(stored_ids(database_url)) > 0, timeout=180, message="no order was stored")
        with ThreadPoolExecutor(1) as pool:
            flowing = pool.submit(lambda: [publish(cluster.bootstrap_servers, topic, r) for r in rounds[1:]])
            victim.kill()  # the group's coordinator, as the next rounds are being published
            flowing.result(timeout=600)
        wait_until(lambda: len(stored_ids(database_url)) == 4000, timeout=300,
                   message="the worker stopped storing while a broker was down")

        victim.start(timeout=300)
        last = orders_from(110, 400)
        publish(cluster.bootstrap_servers, topic, last)
        everything = {o.order_id for r in [*rounds, last] for o in r}
        wait_until(lambda: stored_ids(database_url) == everything, timeout=300,
                   message="orders were lost across the broker's death and return")
        assert_stored_exactly_once(database_url, sorted(everything))
        wait_until(lambda: topic_layout(cluster.bootstrap_servers, topic)[2] == {3}, timeout=300,
                   message="the restarted broker never caught up with its partitions")
    finally:
        worker.stop()


def partition_leader(bootstrap_servers: str, topic: str) -> int | None:
    """The node leading partition 0 of ``topic``, once it has one."""
    [described] = admin(bootstrap_servers, lambda client: client.describe_topics([topic]))
    return described["partitions"][0]["leader"] if described["partitions"] else None


async def publish_while_followers_freeze(cluster: KafkaCluster, leader: int, topic: str,
                                         orders: list[Order]) -> None:
    """Publish ``orders[0]``, then ``orders[1]`` while the partition's followers are frozen.

    The leader writes the second order but cannot gather the in-sync acknowledgements that
    ``acks=all`` waits for, so it answers the send with a timeout: a lost acknowledgement for
    an order that is in fact on the partition. The order is then sent again, as the generator
    does with a send that failed.
    """
    followers = [node.process for node in cluster.nodes if node.membership.node_id != leader]
    app = faust.App("idempotence-test", broker=f"kafka://{cluster.bootstrap_servers}", producer_acks=-1,
                    producer_request_timeout=2.0)
    producer = FastTransport(app.conf.broker, app).create_producer()
    send = functools.partial(producer.send, topic, None, partition=None, timestamp=None, headers=None)
    await producer.start()
    try:
        await (await send(orders[0].dumps()))
        for follower in followers:
            os.killpg(follower.pid, signal.SIGSTOP)
        try:
            delivery = asyncio.ensure_future(await send(orders[1].dumps()))
            await asyncio.wait([delivery], timeout=4)  # twice the producer's request timeout
        finally:
            for follower in followers:
                os.killpg(follower.pid, signal.SIGCONT)
        try:
            await delivery
        except KafkaError:
            await (await send(orders[1].dumps()))
    finally:
        await producer.stop()


@pytest.mark.integration
def test_an_order_whose_acknowledgement_was_lost_is_on_the_topic_once(cluster: KafkaCluster):
    topic, orders = unique_names()["ORDERS_TOPIC"], orders_from(120, 2)
    create_topic(cluster.bootstrap_servers, topic, replicas=3, **{"min.insync.replicas": "2"})
    leader = wait_until(lambda: partition_leader(cluster.bootstrap_servers, topic))
    asyncio.run(publish_while_followers_freeze(cluster, leader, topic, orders))
    assert sorted(topic_order_ids(cluster.bootstrap_servers, topic)) == sorted(o.order_id for o in orders)


def timeline(workers: list[WorkerProcess]) -> list[tuple[datetime, int, str]]:
    """Each worker's ticks that placed orders and its report launches, as (when, worker, what), in order.

    A report line comes when the run ends, so its launch is the line's time less the run's duration.
    """
    events: list[tuple[datetime, int, str]] = []
    for index, worker in enumerate(workers):
        text = worker.log_file.read_text(errors="replace")
        events += [(logged_at(m), index, "placed") for m in PLACED.finditer(text)]
        events += [(logged_at(m) - timedelta(seconds=float(m["seconds"] or 0)), index, "report")
                   for m in REPORT.finditer(text)]
    return sorted(events)


def logged_at(match: re.Match[str]) -> datetime:
    return datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f")


def leaders_since(workers: list[WorkerProcess], moment: datetime) -> set[int]:
    """The workers that placed orders after ``moment``."""
    return {index for at, index, what in timeline(workers) if what == "placed" and at > moment}


def switches(events: list[tuple[datetime, int, str]]) -> int:
    """How often the worker placing orders changed from one tick to the next."""
    placing = [index for _, index, what in events if what == "placed"]
    return sum(1 for before, after in itertools.pairwise(placing) if before != after)


def launched_off_the_leader(events: list[tuple[datetime, int, str]]) -> list[datetime]:
    """Report launches by a worker that was not the only one placing orders in the seconds around them."""
    window = timedelta(seconds=2)
    return [at for at, index, what in events if what == "report" and {
        other for when, other, kind in events if kind == "placed" and abs(when - at) <= window
    } != {index}]


def log_size(worker: WorkerProcess) -> int:
    return worker.log_file.stat().st_size


def kill_with_children(worker: WorkerProcess) -> None:
    """SIGKILL the worker; then its report job, which would outlive it in a session of its own."""
    children = psutil.Process(worker.pid).children(recursive=True)
    worker.kill()
    for child in children:
        child.kill()


def assert_each_order_once_while_generating(stack: ScratchStack, topic: str, database_url: str) -> list[str]:
    """Every order on the topic stored, once; none sent twice. Orders are still being placed, so
    one reading of the table is compared with the topic read after it. Returns the stored ids."""
    on_topic = topic_order_ids(stack.bootstrap_servers, topic)
    wait_until(lambda: stored_ids(database_url) >= set(on_topic), timeout=180,
               message="orders on the topic were never stored")
    rows = [str(row[0]) for row in query(database_url, "SELECT order_id FROM orders")]
    on_topic = topic_order_ids(stack.bootstrap_servers, topic)
    assert len(on_topic) == len(set(on_topic)), "an order was generated or sent twice"
    assert len(rows) == len(set(rows)), "an order was stored twice"
    assert set(rows) <= set(on_topic), "an order was stored that is not on the topic"
    return rows


def two_busy_workers(stack: ScratchStack, database_url: str, tmp_path: Path, orders: list[Order],
                     **settings: str) -> tuple[list[WorkerProcess], str]:
    """Two workers of one group, generating every 0.25 s, each having stored some of ``orders``."""
    env = worker_env(stack.bootstrap_servers, database_url, ORDER_INTERVAL_SECONDS="0.25",
                     ORDERS_PER_TICK="2", **settings)
    workers = [WorkerProcess({**env, "DATA_DIR": str(tmp_path / f"data-{i}")}, tmp_path / f"worker-{i}.log")
               for i in (1, 2)]
    try:
        for worker in workers:
            worker.start(ready_timeout=240)
        offsets = [log_size(w) for w in workers]
        publish(stack.bootstrap_servers, env["ORDERS_TOPIC"], orders)
        for worker, offset in zip(workers, offsets, strict=True):
            worker.wait_for_log("Stored", timeout=180, offset=offset)  # each has partitions of its own
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers, env["ORDERS_TOPIC"]


@pytest.mark.integration
def test_two_workers_share_the_partitions_and_the_survivor_takes_over_the_leadership(
    stack: ScratchStack, database_url: str, tmp_path: Path
):
    produced, more = orders_from(200, 3000), orders_from(201, 3000)
    workers, topic = two_busy_workers(stack, database_url, tmp_path, produced,
                                      REPORT_INTERVAL_SECONDS="20", SPARK_DRIVER_MEMORY="512m")
    try:
        settled = datetime.now()
        leaders = wait_until(lambda: leaders_since(workers, settled), timeout=120)
        assert len(leaders) == 1, "both workers placed orders"
        [leader] = leaders
        [survivor] = [w for i, w in enumerate(workers) if i != leader]

        offset = log_size(survivor)
        publish(stack.bootstrap_servers, topic, more)
        kill_with_children(workers[leader])  # with orders of its partitions still to store
        survivor.wait_for_log("Placed", timeout=240, offset=offset)
        survivor.wait_for_log("Report run succeeded", timeout=600, offset=offset)
        events = timeline(workers)
        assert switches(events) <= 2, "two workers placed orders at the same time"
        assert not launched_off_the_leader(events), "a worker that was not leading launched a report"

        rows = assert_each_order_once_while_generating(stack, topic, database_url)
        assert {o.order_id for o in produced + more} <= set(rows)
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize(("env", "partitions"), [
    ({}, 6),
    ({"TOPIC_PARTITIONS": "2"}, 2),
    ({"TOPIC_PARTITIONS": "2", "ORDERS_TOPIC_PARTITIONS": "12"}, 12),
])
def test_orders_topic_partitions_default_to_six_and_the_former_name_still_counts(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], partitions: int
):
    for name in ("TOPIC_PARTITIONS", "ORDERS_TOPIC_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env().orders_topic_partitions == partitions


@pytest.mark.parametrize("name", ["WORKERS", "KAFKA_NODES", "ORDERS_TOPIC_PARTITIONS",
                                  "TOPIC_REPLICATION_FACTOR"])
def test_counts_below_one_are_refused(monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setenv(name, "0")
    with pytest.raises(ValueError, match=f"{name} must be an integer of at least 1, got '0'"):
        Settings.from_env()


@pytest.mark.parametrize(("brokers", "replicas", "min_insync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_three_copies_at_most_and_two_in_sync_once_there_are_three(
    brokers: int, replicas: int, min_insync: int
):
    assert replication_factor(brokers) == replicas
    assert min_insync_replicas(replicas) == min_insync


def test_kafka_nodes_get_ports_two_apart_and_a_folder_per_cluster_size(tmp_path: Path):
    assert local_kafka(tmp_path).home == tmp_path / "kafka"
    cluster = local_kafka(tmp_path, 9092, nodes=3)
    assert isinstance(cluster, KafkaCluster)
    assert cluster.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert [node.controller_port for node in cluster.nodes] == [9093, 9095, 9097]
    home = tmp_path / "kafka-3-nodes"
    assert [node.home for node in cluster.nodes] == [home / f"node-{i}" for i in (1, 2, 3)]
    assert {node.membership.cluster_id for node in cluster.nodes} == {(home / "cluster-id").read_text()}


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.integration
def test_infra_run_starts_as_many_workers_as_asked_each_with_its_port_and_folder(
    stack: ScratchStack, database_url: str, tmp_path: Path
):
    port = free_port()
    env = {**os.environ, **worker_env(stack.bootstrap_servers, database_url),
           "WORKERS": "2", "WEB_PORT": str(port), "DATA_DIR": str(tmp_path / "data")}
    run = spawn([sys.executable, "-m", "infra", "run"], tmp_path / "run.log", env=env, cwd=PROJECT_ROOT)
    try:
        for web_port in (port, port + 1):
            wait_until(lambda p=web_port: answers(f"http://127.0.0.1:{p}/health"), timeout=240,
                       message=f"no worker answered on port {web_port}")
        assert (tmp_path / "data" / "worker-2" / "faust").is_dir()
    finally:
        terminate(run, timeout=150)
    log = (tmp_path / "run.log").read_text()
    assert "Worker 1 stopped (exit code 0)" in log and "Worker 2 stopped (exit code 0)" in log


@pytest.mark.integration
def test_infra_partitions_gives_the_orders_topic_more_partitions_and_never_fewer(stack: ScratchStack):
    env = {**os.environ, **unique_names(), "KAFKA_BROKER": stack.bootstrap_servers}
    publish(stack.bootstrap_servers, env["ORDERS_TOPIC"], orders_from(300, 1))  # auto-created, 3 partitions

    def partitions(count: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra", "partitions", str(count)], env=env,
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)

    grown = partitions(8)
    assert grown.returncode == 0, grown.stderr
    assert topic_layout(stack.bootstrap_servers, env["ORDERS_TOPIC"])[0] == 8
    refused = partitions(4)
    assert refused.returncode == 1
    assert "could not get 4 partitions" in refused.stderr


@pytest.mark.integration
def test_a_worker_frozen_mid_stream_and_thawed_after_the_group_moved_on_duplicates_nothing(
    stack: ScratchStack, database_url: str, tmp_path: Path
):
    first, during = orders_from(210, 3000), orders_from(211, 3000)
    workers, topic = two_busy_workers(stack, database_url, tmp_path, first, REPORT_INTERVAL_SECONDS="3600")
    try:

        frozen, other = workers
        publish(stack.bootstrap_servers, topic, during)
        os.kill(frozen.pid, signal.SIGSTOP)  # mid-stream: its batch and its offsets wait, unfinished
        try:
            offset = log_size(other)
            # The group drops the frozen member after its session times out; the other takes over.
            other.wait_for_log("Placed", timeout=240, offset=offset)
            wait_until(lambda: stored_ids(database_url) >= {o.order_id for o in first + during}, timeout=240)
            thawed_at = log_size(frozen)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)  # it finishes its stale batch and rejoins
        frozen.wait_for_log("Joined group", timeout=180, offset=thawed_at)

        assert_each_order_once_while_generating(stack, topic, database_url)
    finally:
        for worker in workers:
            worker.stop()


STORED = re.compile(r"Stored (\d+) new order\(s\) in PostgreSQL \((\d+) already there")
REVOKING = "Revoking previously assigned partitions"
"""aiokafka's line before the table of the partitions it revokes (an empty set: on the same line)."""


def stores(lines: list[str]) -> list[int]:
    """The orders of each batch these lines of a worker's log say it stored (new or already there)."""
    return [int(m[1]) + int(m[2]) for m in map(STORED.search, lines) if m]


def while_revoking(log: str) -> list[str]:
    """The lines of a worker's log from its first revocation of partitions to its next join."""
    lines = log.splitlines()
    start = next(n for n, line in enumerate(lines) if line.rstrip().endswith(REVOKING))
    end = next(n for n, line in enumerate(lines[start:], start) if "Joined group" in line)
    return lines[start:end]


@pytest.mark.integration
def test_a_worker_joining_over_a_backlog_gets_its_partitions_after_one_batch(
    stack: ScratchStack, database_url: str, tmp_path: Path
):
    """The first worker has fetched the whole backlog when the second joins: it hands over the
    partitions once the batch in its transaction is stored, not once it has stored all it held."""
    batch, backlog = 500, 60_000
    env = worker_env(stack.bootstrap_servers, database_url, SIMULATED_STORES="50",
                     BATCH_MAX_ORDERS=str(batch))
    subprocess.run(faust_command("produce-orders", "--count", str(backlog), "--seed", "7"), cwd=PROJECT_ROOT,
                   env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    workers = [WorkerProcess({**env, "DATA_DIR": str(tmp_path / f"data-{i}")}, tmp_path / f"worker-{i}.log")
               for i in (1, 2)]
    try:
        workers[0].start(ready_timeout=240)
        wait_until(lambda: len(stored_ids(database_url)) >= batch, timeout=180, message="no order was stored")
        workers[1].start(ready_timeout=240)
        wait_until(lambda: len(stored_ids(database_url)) == backlog, timeout=300,
                   message="the two workers did not store the backlog")
    finally:
        for worker in workers:
            worker.stop()
    first, second = (worker.log_file.read_text(errors="replace") for worker in workers)
    # A batch is whole fetches of a partition, up to BATCH_MAX_ORDERS each, until it holds as many.
    in_revocation = stores(while_revoking(first))
    assert len(in_revocation) <= 1 and sum(in_revocation) < 2 * batch, \
        f"the first worker held the rebalance to store {in_revocation}"
    assert stores(second.splitlines()), "the second worker stored no order"
    assert_stored_exactly_once(database_url, topic_order_ids(stack.bootstrap_servers, env["ORDERS_TOPIC"]))
