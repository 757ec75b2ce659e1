"""Ingest throughput: the real worker drains a preloaded topic into PostgreSQL, against the baseline."""

from __future__ import annotations

import logging
import uuid

from bench.baseline import run_baseline
from bench.commits import commit_timeline
from bench.monitor import CpuMonitor, peak_rss_bytes
from bench.pipeline import WorkerProcess, pipeline_env, produce_orders, wait_for_orders
from bench.stack import BenchStack

log = logging.getLogger("bench")

MIB = 1024 * 1024


def preload(stack: BenchStack, orders: int, seed: int) -> str:
    """Publish ``orders`` generated orders to a new topic with the load mode; return its name."""
    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(stack, stack.postgres.url(), topic, "preload")
    log.info("Preloading %s orders (seed %d) into topic %s ...", f"{orders:,}", seed, topic)
    log.info("  %s", produce_orders(env, orders, seed))
    return topic


def drain_with_worker(stack: BenchStack, topic: str, orders: int, run: int) -> dict[str, float]:
    """Start a worker with a new consumer group and database; measure it storing every order."""
    database_url = stack.new_database("ingest")
    env = pipeline_env(stack, database_url, topic, f"ingest{run}")
    worker = WorkerProcess(env, stack.home / "logs" / f"ingest-worker-{run}.log")
    groups = {"postgres": stack.postgres_process(), "kafka": stack.kafka_process()}
    try:
        groups["worker"] = worker.start()
        with CpuMonitor(groups) as monitor:
            wait_for_orders(database_url, orders, worker, timeout=max(600.0, orders / 100))
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
        "worker_cores": cpu["worker"] / timeline.window,
        "postgres_cores": cpu["postgres"] / timeline.window,
        "kafka_cores": cpu["kafka"] / timeline.window,
        "peak_rss_mib": peak_rss / MIB,
        "wall_s": timeline.last - worker.started_at,
    }


def drain_with_baseline(stack: BenchStack, topic: str, orders: int, run: int) -> float:
    """Run the naive consumer over the first ``orders`` messages; return its orders/s."""
    database_url = stack.new_database("baseline")
    run_baseline(stack.bootstrap_servers, topic, database_url, orders,
                 group_id=f"bench-baseline-{run}-{uuid.uuid4().hex[:8]}")
    return commit_timeline(database_url).rates()[0]


def ingest_run(stack: BenchStack, topic: str, orders: int, baseline_orders: int,
               run: int) -> dict[str, float]:
    """One run: the worker over all orders, then the baseline over its subset, and the ratio."""
    figures = drain_with_worker(stack, topic, orders, run)
    log.info("  worker: %s orders/s, %.2f cores of CPU", f"{figures['orders_per_s']:,.0f}",
             figures["worker_cores"])
    figures["baseline_orders_per_s"] = drain_with_baseline(stack, topic, baseline_orders, run)
    figures["speedup"] = figures["orders_per_s"] / figures["baseline_orders_per_s"]
    log.info("  baseline: %s orders/s; the worker is %.0fx faster",
             f"{figures['baseline_orders_per_s']:,.0f}", figures["speedup"])
    return figures
