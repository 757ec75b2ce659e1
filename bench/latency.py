"""End-to-end latency: orders produced at a fixed rate, timed from produce to commit in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from bench.commits import order_commit_times
from bench.monitor import process_tree_cpu, reaped_children_cpu
from bench.pipeline import pipeline_env, produce_orders, wait_for_orders
from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("bench")

WARM_UP_ORDERS = 100
READ_PATIENCE_SECONDS = 30.0
"""How long reading the topic back may go without a message (a loaded machine is slow to
look up each partition's first offset)."""


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


async def _produce_times(bootstrap_servers: str, topic: str, expected: int,
                         security: KafkaSecurity) -> dict[str, float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **security.client_options())
    await consumer.start()
    times: dict[str, float] = {}
    deadline = time.monotonic() + READ_PATIENCE_SECONDS
    try:
        while len(times) < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batches:
                deadline = time.monotonic() + READ_PATIENCE_SECONDS
            elif time.monotonic() > deadline:
                raise TimeoutError(f"read only {len(times)} of {expected} messages from {topic}")
            for records in batches.values():
                times.update((json.loads(r.value)["order_id"], r.timestamp / 1000) for r in records)
    finally:
        await consumer.stop()
    return times


def produce_times(bootstrap_servers: str, topic: str, expected: int,
                  security: KafkaSecurity = PLAINTEXT) -> dict[str, float]:
    """Each message's order id (from its value: the key is the store) and its producer timestamp
    (CreateTime), in seconds."""
    return asyncio.run(_produce_times(bootstrap_servers, topic, expected, security))


def batch_totals(url: str) -> dict[str, float]:
    """The worker's batch histograms so far: batches, messages in them, seconds storing them."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {sample.name: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    return {"batches": samples["restaurant_batch_messages_count"],
            "messages": samples["restaurant_batch_messages_sum"],
            "store_s": samples["restaurant_batch_store_seconds_sum"]}


def latency_run(stack: ScratchStack, rate: float, seconds: float, seed: int,
                run: int) -> dict[str, float]:
    """Warm a worker up, then publish ``rate`` orders/s for ``seconds`` and time each one; with
    the worker's batches over that time (how many, how big, how long each took to store)."""
    count = round(rate * seconds)
    database_url = stack.new_database("latency")
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(stack, database_url, topic, f"latency{run}")
    worker = WorkerProcess(env, stack.home / "logs" / f"latency-worker-{run}.log", log_level="warn",
                           web_port=int(env["WEB_PORT"]))
    try:
        worker.start(ready_timeout=None)
        produce_orders(env, WARM_UP_ORDERS, seed + 1_000_000)
        wait_for_orders(database_url, WARM_UP_ORDERS, worker, timeout=120)
        before = batch_totals(worker.url)
        log.info("  the worker is consuming; publishing %d orders/s for %.0f s ...", rate, seconds)
        with busy_cores(stack, worker) as cores:
            log.info("  %s", produce_orders(env, count, seed, rate))
        wait_for_orders(database_url, WARM_UP_ORDERS + count, worker, timeout=120)
        after = batch_totals(worker.url)
    finally:
        worker.stop()
    batches = after["batches"] - before["batches"]
    figures = measure(stack, topic, database_url, WARM_UP_ORDERS + count, WARM_UP_ORDERS)
    return {**figures, "batches_per_s": batches / (count / figures["achieved_rate"]),
            "orders_per_batch": (after["messages"] - before["messages"]) / batches,
            "store_ms_per_batch": (after["store_s"] - before["store_s"]) / batches * 1000,
            **{f"{name}_cores": value for name, value in cores.items()},
            "worker_us_per_order": cores["worker"] * 1e6 / rate}


@contextmanager
def busy_cores(stack: ScratchStack, worker: WorkerProcess) -> Iterator[dict[str, float]]:
    """Cores each process kept busy while the block ran (filled in on exit): the worker, PostgreSQL,
    the Kafka broker, the producer (``produce-orders``, a child this process waits for), and all."""
    groups = {"worker": psutil.Process(worker.pid), "postgres": stack.postgres_process(),
              "kafka": stack.kafka_process()}
    bench = psutil.Process()
    start = time.monotonic()
    before = {name: process_tree_cpu(process) for name, process in groups.items()}
    producer_before = reaped_children_cpu(bench)
    cores: dict[str, float] = {}
    yield cores
    window = time.monotonic() - start
    cores.update({name: (process_tree_cpu(process) - before[name]) / window
                  for name, process in groups.items()})
    cores["producer"] = (reaped_children_cpu(bench) - producer_before) / window
    cores["all"] = sum(cores.values())


def measure(stack: ScratchStack, topic: str, database_url: str, total: int,
            warm_up: int) -> dict[str, float]:
    """Latency figures in ms for the orders after the first ``warm_up`` ones."""
    produced = produce_times(stack.bootstrap_servers, topic, total, stack.kafka.security)
    measured = sorted(produced.items(), key=lambda item: item[1])[warm_up:]
    committed = order_commit_times(database_url)
    latencies = [(committed[order_id] - at) * 1000 for order_id, at in measured]
    span = measured[-1][1] - measured[0][1]
    return {
        "achieved_rate": (len(measured) - 1) / span,
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }
