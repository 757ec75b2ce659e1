"""The product under test, run as its users run it: ``faust -A restaurant_app`` processes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from infra.scratch import ScratchStack, WorkerProcess, faust_command
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port
from restaurant_app.progress import Progress
from restaurant_app.settings import PROJECT_ROOT, Settings

log = logging.getLogger("bench")

QUIET_SECONDS = "86400"
"""Timer interval for the order generator and the reports: they must not fire during a run."""


@contextmanager
def spark_connect_server(home: Path) -> Iterator[SparkConnectServer]:
    """A Spark Connect server on a free port, its files under ``home``, as ``make run`` starts one."""
    settings = Settings.from_env()
    server = SparkConnectServer(home, free_port(), timezone=settings.restaurant_timezone,
                                driver_memory=settings.spark_driver_memory)
    log.info("  starting the Spark Connect server ...")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pipeline_env(stack: ScratchStack, database_url: str, topic: str, name: str) -> dict[str, str]:
    """Settings for one worker or producer: its own topic, consumer group and data folder."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BROKER": stack.bootstrap_servers,
        **stack.kafka.client_env("worker"),
        "DATABASE_URL": database_url,
        "ORDERS_TOPIC": topic,
        "DEAD_LETTER_TOPIC": f"{topic}-dead-letter",
        "APP_ID": f"bench-{name}-{suffix}",
        "DATA_DIR": str(stack.home / "runs" / f"{name}-{suffix}"),
        "WEB_PORT": str(free_port()),
        "ORDER_INTERVAL_SECONDS": QUIET_SECONDS,
        "REPORT_INTERVAL_SECONDS": QUIET_SECONDS,
    }


def produce_orders(env: dict[str, str], count: int, seed: int, rate: float = 0.0) -> str:
    """Publish ``count`` generated orders with the product's load mode; return what it printed.

    Its standard error (its progress, and any error) goes straight to the bench's.
    """
    result = subprocess.run(
        faust_command("produce-orders", "--count", str(count), "--seed", str(seed),
                      "--rate", str(rate)),
        env={**os.environ, **env}, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"produce-orders failed with exit code {result.returncode} (its errors are"
                           f" above):\n{result.stdout}")
    return result.stdout.strip().splitlines()[-1]


def count_orders(database_url: str) -> int:
    """Orders committed so far; 0 while the worker has not created the tables yet."""
    try:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def wait_for_orders(database_url: str, expected: int, worker: WorkerProcess | None,
                    timeout: float, interval: float = 0.5, progress: Progress | None = None) -> None:
    """Poll until ``expected`` orders are committed, showing ``progress`` if given; fail if the
    worker dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        found = count_orders(database_url)
        if progress is not None:
            progress.update(found)
        if found >= expected:
            return
        if worker is not None:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {found} of {expected} orders arrived within {timeout:.0f} s")
        time.sleep(interval)
