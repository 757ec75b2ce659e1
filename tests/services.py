"""Test helpers around the real services: topics, polling, queries, Kafka messages, the report job.

The services themselves and the worker processes come from ``infra.scratch``, shared with the bench.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

import msgspec
import psutil
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from restaurant_app.kafka_security import KafkaSecurity
from restaurant_app.models import Order
from restaurant_app.order_sink import ITEM_FIELD_COLUMNS, ORDER_COLUMNS
from restaurant_app.settings import PROJECT_ROOT
from spark_reports.result import parse_result


def unique_names() -> dict[str, str]:
    """Environment that gives one test its own topics and consumer group."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "APP_ID": f"test-{suffix}",
        "ORDERS_TOPIC": f"orders-{suffix}",
        "DEAD_LETTER_TOPIC": f"orders-dead-letter-{suffix}",
    }


def outward_address() -> str:
    """An address of this machine that another machine would use (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # a UDP socket's connect sends nothing
        except OSError:
            return "127.0.0.1"
        return sock.getsockname()[0]


def outward_ipv6_address() -> str | None:
    """An IPv6 address of this machine that another machine would use, else ``::1``; None
    without IPv6."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(("2001:db8::1", 9))  # a UDP socket's connect sends nothing
            except OSError:
                sock.bind(("::1", 0))
            return sock.getsockname()[0]
    except OSError:
        return None


def wait_until(condition, timeout: float = 60.0, interval: float = 0.25, message: str = ""):
    """Poll ``condition`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def produce(bootstrap_servers: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Publish (key, value) messages and wait until the broker has them all."""

    async def send_all() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
        await producer.start()
        try:
            sent = [await producer.send(topic, value=value, key=key) for key, value in messages]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(send_all())


def admin(bootstrap_servers: str, action: Callable[[AIOKafkaAdminClient], Awaitable[Any]],
          security: KafkaSecurity | None = None) -> Any:
    """Run ``action`` with Kafka's admin client (logged in with ``security``) and return what it returns."""

    async def run() -> Any:
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                     **(security.client_options() if security else {}))
        await client.start()
        try:
            return await action(client)
        finally:
            await client.close()

    return asyncio.run(run())


def create_topic(bootstrap_servers: str, topic: str, replicas: int = 1, **config: str) -> None:
    """Create ``topic`` with one partition, ``replicas`` copies of it and ``config``."""
    response = admin(bootstrap_servers, lambda client: client.create_topics(
        [NewTopic(topic, 1, replicas, topic_configs=config)]))
    assert [error[1] for error in response.topic_errors] == [0], response


def consume_all(bootstrap_servers: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Read a topic from the start until ``expected`` messages have arrived."""

    async def read() -> list:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None,
        )
        await consumer.start()
        records: list = []
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while len(records) < expected and asyncio.get_running_loop().time() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def run_report_job(
    database_url: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300.0
) -> dict:
    """Run ``python -m spark_reports`` against ``database_url``; return its result line."""
    completed = subprocess.run(
        [sys.executable, "-m", "spark_reports", *args],
        env={**os.environ, "DATABASE_URL": database_url, "SPARK_DRIVER_MEMORY": "512m", **(env or {})},
        capture_output=True, timeout=timeout, cwd=PROJECT_ROOT, check=False,
    )
    result = parse_result(completed.stdout)
    if result is None:
        raise RuntimeError(
            f"the report job printed no result (exit code {completed.returncode}):\n"
            f"{completed.stderr.decode(errors='replace')[-3000:]}"
        )
    return {**asdict(result), "exit_code": completed.returncode}


def execute(database_url: str, sql: str, params: tuple | dict = ()) -> None:
    """Run one statement that returns no rows, and commit it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql, params)


def fetch(url: str) -> tuple[int, bytes]:
    """GET ``url``: its status and body, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get(url: str) -> tuple[int, dict]:
    """GET ``url``: its status and its body read as JSON."""
    status, body = fetch(url)
    return status, json.loads(body)


def command_lines(root_pid: int) -> list[str]:
    """The command line of a process and of each of its descendants still alive."""
    root = psutil.Process(root_pid)
    lines = []
    for process in [root, *root.children(recursive=True)]:
        try:
            lines.append(" ".join(process.cmdline()))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):  # ended while we looked
            continue
    return lines


def order_rows(orders: Iterable[Order]) -> Iterator[tuple[Any, ...]]:
    """The ``orders`` rows of a batch as query parameters, in ``ORDER_COLUMNS`` order: for tests that
    insert rows themselves, and the reference the sink's COPY text is checked against."""
    for order in orders:
        payments = msgspec.json.encode(order.payments).decode() if order.payments else None
        yield (*(getattr(order, name) for name, _ in ORDER_COLUMNS[:-1]), payments)


def item_rows(orders: Iterable[Order]) -> Iterator[tuple[Any, ...]]:
    """The ``order_items`` rows of a batch as query parameters, in ``ITEM_COLUMNS`` order."""
    for order in orders:
        for line_no, item in enumerate(order.items, start=1):
            yield (order.order_id, line_no, *(getattr(item, name) for name, _ in ITEM_FIELD_COLUMNS))
