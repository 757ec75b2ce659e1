"""Ingest throughput: the real worker drains a preloaded topic into PostgreSQL, against the baseline."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import psutil

from bench.baseline import run_baseline
from bench.commits import commit_timeline
from bench.monitor import CpuMonitor, peak_rss_bytes
from bench.pipeline import pipeline_env, produce_orders, wait_for_orders
from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.progress import Progress

log = logging.getLogger("bench")

MIB = 1024 * 1024
FLOOR_SHARE = 4
"""Faust alone reads the first quarter of the preloaded topic."""


def preload(stack: ScratchStack, orders: int, seed: int) -> str:
    """Publish ``orders`` generated orders to a new topic with the load mode; return its name."""
    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(stack, stack.postgres.url(), topic, "preload")
    log.info("Preloading %s orders (seed %d) into topic %s ...", f"{orders:,}", seed, topic)
    log.info("  %s", produce_orders(env, orders, seed))
    return topic


def drain_with_worker(stack: ScratchStack, topic: str, orders: int, run: int) -> dict[str, float]:
    """Start a worker with a new consumer group and database; measure it storing every order."""
    database_url = stack.new_database("ingest")
    env = pipeline_env(stack, database_url, topic, f"ingest{run}")
    worker = WorkerProcess(env, stack.home / "logs" / f"ingest-worker-{run}.log", log_level="warn")
    groups = {"postgres": stack.postgres_process(), "kafka": stack.kafka_process()}
    try:
        groups["worker"] = psutil.Process(worker.start(ready_timeout=None).pid)
        with CpuMonitor(groups) as monitor, Progress("Worker storing orders", orders) as progress:
            wait_for_orders(database_url, orders, worker, timeout=max(600.0, orders / 100), progress=progress)
            peak_rss = peak_rss_bytes(worker.pid)
    finally:
        worker.stop()
    timeline = commit_timeline(database_url)
    orders_per_s, rows_per_s = timeline.rates()
    cpu = monitor.cpu_between(timeline.first, timeline.last)
    return {
        "orders_per_s": orders_per_s,
        "rows_per_s": rows_per_s,
        "worker_cpu_s": cpu["worker"],
        "worker_us_per_order": cpu["worker"] / (orders_per_s * timeline.window) * 1e6,
        "postgres_us_per_order": cpu["postgres"] / (orders_per_s * timeline.window) * 1e6,
        "worker_cores": cpu["worker"] / timeline.window,
        "postgres_cores": cpu["postgres"] / timeline.window,
        "kafka_cores": cpu["kafka"] / timeline.window,
        "peak_rss_mib": peak_rss / MIB,
        "wall_s": timeline.last - worker.started_at,
    }


def floor_rate(progress: Path, messages: int) -> float | None:
    """Messages/s acknowledged after the first batch, once ``messages`` are done; else None."""
    if not progress.exists():
        return None
    batches = [json.loads(line) for line in progress.read_text().splitlines()]
    if sum(count for _, count in batches) < messages or len(batches) < 2:
        return None
    first, last = batches[0][0], batches[-1][0]
    return sum(count for _, count in batches[1:]) / (last - first)


def drain_with_floor(stack: ScratchStack, topic: str, messages: int, run: int) -> float:
    """Messages/s of Faust alone (bench/floor.py) over the first ``messages`` of the topic."""
    env = pipeline_env(stack, stack.postgres.url(), topic, f"floor{run}")
    worker = WorkerProcess(env, stack.home / "logs" / f"floor-worker-{run}.log", app="bench.floor",
                           log_level="warn")
    progress = Path(env["DATA_DIR"]) / "floor.jsonl"
    deadline = time.monotonic() + max(300.0, messages / 100)
    try:
        worker.start(ready_timeout=None)
        while (rate := floor_rate(progress, messages)) is None:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Faust alone did not read {messages} messages in time")
            time.sleep(0.5)
    finally:
        worker.stop()
    return rate


def drain_with_baseline(stack: ScratchStack, topic: str, orders: int, run: int) -> float:
    """Run the naive consumer over the first ``orders`` messages; return its orders/s."""
    database_url = stack.new_database("baseline")
    run_baseline(stack.bootstrap_servers, topic, database_url, orders,
                 group_id=f"bench-baseline-{run}-{uuid.uuid4().hex[:8]}")
    return commit_timeline(database_url).rates()[0]


def ingest_run(stack: ScratchStack, topic: str, orders: int, baseline_orders: int,
               run: int) -> dict[str, float]:
    """One run: the worker over all orders, then Faust alone and the baseline over subsets."""
    figures = drain_with_worker(stack, topic, orders, run)
    log.info("  worker: %s orders/s, %.2f cores of CPU", f"{figures['orders_per_s']:,.0f}",
             figures["worker_cores"])
    figures["floor_messages_per_s"] = drain_with_floor(stack, topic, orders // FLOOR_SHARE, run)
    log.info("  Faust alone: %s messages/s", f"{figures['floor_messages_per_s']:,.0f}")
    figures["baseline_orders_per_s"] = drain_with_baseline(stack, topic, baseline_orders, run)
    figures["speedup"] = figures["orders_per_s"] / figures["baseline_orders_per_s"]
    log.info("  baseline: %s orders/s; the worker is %.0fx faster",
             f"{figures['baseline_orders_per_s']:,.0f}", figures["speedup"])
    return figures
